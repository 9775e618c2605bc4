# /main.py on the device: a board runs it after boot.py. The application is bytecode in
# /lib/firmware/, so nothing is compiled on the device at power-up.
from firmware import main

main.main()
