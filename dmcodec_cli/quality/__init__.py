"""Roundtrip quality: metrics (STOI, PESQ-WB, SI-SDR, log-mel distance, WER / WIL), scoring of file
pairs and codec roundtrips into a resumable JSON, tables with confidence intervals, and plots."""
