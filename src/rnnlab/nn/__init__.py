"""rnnlab.nn: cells, layers, and the building blocks of the structures. Pure torch.nn."""
from .attention import AdditiveAttention, DotAttention, GeneralAttention, MultiHeadAttention, build_attention
from .cell import RecurrentCell
from .conv import ConvNet2d, TemporalCNNEncoder
from .crf import LinearChainCRF
from .gru_cell import GRUCell
from .lstm_cell import LSTMCell
from .min_rnn import MinGRU, MinGRUCell, MinLSTM, MinLSTMCell
from .recurrent import GRU, LSTM, RNN, Recurrent
from .rnn_cell import RNNCell
from .state import LSTMState
from .state_table import StateTable
from .transformer import TransformerDecoder, TransformerDecoderBlock, TransformerEncoder, TransformerEncoderBlock
from .window import WindowEncoder

__all__ = [
    "RecurrentCell", "RNNCell", "LSTMCell", "GRUCell", "Recurrent", "RNN", "LSTM", "GRU", "LSTMState", "StateTable",
    "MinGRU", "MinLSTM", "MinGRUCell", "MinLSTMCell", "WindowEncoder", "TemporalCNNEncoder", "ConvNet2d",
    "LinearChainCRF",
    "AdditiveAttention", "DotAttention", "GeneralAttention", "MultiHeadAttention", "build_attention",
    "TransformerEncoderBlock", "TransformerDecoderBlock", "TransformerEncoder", "TransformerDecoder",
]
