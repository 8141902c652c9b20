"""Tests of the stereo file-format layer ``lightning_hpml.datamodules.formats``."""
