"""Generate loop: a signature over the threshold gets one regression test, and its reproduction
check."""
