"""Medical scans: chest X-ray classification from raw image files to a deployable CNN."""
