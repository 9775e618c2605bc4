"""The rules of fence learning as numbers: every constant docs/fence-learning.md names, with why.

The other learn_*.py modules read them from here, so a rule is changed in one place.
"""

# Evidence before any change: DLInf labels a point from 2 deliveries with 51% agreement; here 2
# agreeing fixes on at least 2 days, so one visit's correlated GNSS error never moves a fence.
MIN_DELIVERIES = 2
MIN_DAYS = 2
MIN_AGREEMENT = 0.6  # share of the fixes' weight in the cluster around the point
MIN_SCATTER = 4  # fewer fixes that disagree are too few to call scattered: wait for more
# Which fixes count: the device's own limits for judging a fix (geofence.MAX_HDOP_X10, MAX_AGE_S).
MAX_ACCURACY_M = 25.0
MAX_FIX_AGE_S = 10
SIGMA_FLOOR_M = 1.5  # no fix is trusted as better than this (1-sigma, per axis)
OUTLIER_MIN_M = 8.0  # a fix this close to the point is never an outlier
OUTLIER_SIGMAS = 3.0
SCATTER_M = 10.0  # RMS distance of the kept fixes from their point above this: a person looks...
SCATTER_CLAIMED = 2.0  # ...unless within this many times the RMS the fixes' own accuracy predicts
R95_MIN_M = 4.0  # the radius holding 95% of the next fixes is never assumed smaller
RMS_TO_R95 = 1.731  # 2-D Gaussian: r95 = sigma*sqrt(2 ln 20), RMS = sigma*sqrt(2)
R95_TO_SIGMA = 2.448  # 2-D Gaussian: the 95% radius is 2.448 sigma (per axis)
# Geometry and the predicted misses.
DEVICE_MARGIN_M = 5.0  # geofence.MARGIN_DM: a fix within 5 m of the fence is inside
MISS_TARGET = 0.0015  # a learned zone is sized so that 1 next delivery in 667 is predicted outside
KEEP_MISS = 0.003  # a fence predicted to miss at most this share of the next deliveries is kept...
SHRINK = 2.0  # ...unless it is more than this many times the area of the zone the deliveries need
AT_BUILDING_M = 2.0  # a point this close to a footprint is at that building
BOUND_M = 10.0  # a learned point lies within its building buffered by this...
POINT_SES = 2.0  # ...give or take this many standard errors of the point (one side: 97.7%)
ZONE_MIN_M = 2.0  # a delivery zone is never a smaller circle than this
CIRCLE_MIN_M = ZONE_MIN_M
CIRCLE_MAX_M = 30.0  # a delivery zone (every learned fence) is a circle no larger than this
ROUTINE_SHIFT_M = 3.0  # a zone re-centred by less than this, or one at its building's own wall: routine
QUAD_SEGS = 4  # zones as 16-gons, as the compiler makes a Point stop (the vertex budget is 32)
EARTH_M = 6371008.8

ACTIONS = ("keep", "extend", "move", "create", "flag")
NO_BUILDING_MATCHES = ("geocode", "none")  # part 1's match kinds that name no footprint
