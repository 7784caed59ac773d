"""rnnlab.nn: cells, layers, and the building blocks of the structures. Pure torch.nn."""
from .cell import RecurrentCell
from .gru_cell import GRUCell
from .lstm_cell import LSTMCell
from .min_rnn import MinGRU, MinLSTM
from .recurrent import GRU, LSTM, RNN, Recurrent
from .rnn_cell import RNNCell
from .state import LSTMState

__all__ = ["RecurrentCell", "RNNCell", "LSTMCell", "GRUCell", "Recurrent", "RNN", "LSTM", "GRU", "LSTMState", "MinGRU", "MinLSTM"]
