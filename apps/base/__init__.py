"""What every app shares above the pipeline: the app declaration and the app command line."""
