"""Board definitions as data: board_<name>.py defines BOARD = {...}. `depot flash` writes the chosen
one to the device as /lib/firmware/board.mpy; the host reads them with host_tools.boards."""
