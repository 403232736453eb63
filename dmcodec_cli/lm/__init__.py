"""From a code store to speech-LM training data: token layouts, exports, a PyTorch dataset."""
