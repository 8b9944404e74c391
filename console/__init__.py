"""The web console (`python -m pushpipe.console`): overview charts, vendor and stream health, diagnosis, test pushes."""
