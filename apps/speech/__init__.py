"""Speech: keyword spotting and spoken digit strings from WAV files to TF Serving and TFLite."""
