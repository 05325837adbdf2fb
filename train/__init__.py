"""Training and evaluation of the seed paper's CNN and CNN+LSTM models on FER2013."""
