"""The demonstration (`python3 -m mvx.demo`: mvx/demo/steps.py) and Debian's lighttpd as variants
(mvx/demo/lighttpd.py), which the tests and the bench run too."""
