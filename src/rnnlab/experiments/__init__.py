"""rnnlab.experiments: experiments that check the claims about recurrent networks, rerunnable by anyone.

- :mod:`~rnnlab.experiments.long_range`: the adding, copy and selective-copy problems at growing lengths, every
  sequence model at one parameter budget (``rnnlab experiment long-range``).
- :mod:`~rnnlab.experiments.clipping`: a plain RNN trained with and without gradient clipping on a problem whose
  gradients explode (``rnnlab experiment clipping``).
"""
