"""Searches over a trained model's outputs; `decode.decode` runs them on a batch and builds Results.

ctc (greedy, prefix beam), prefix_score (CTC prefix scorer), beam_search (attention and joint),
rescore (attention rescoring of a CTC n-best), teacher_forcing, align (forced alignment, frame times).
"""
