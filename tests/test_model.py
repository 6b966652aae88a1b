import math

import pytest
import torch

from asr.config import SpecAugmentConfig
from asr.features import SpecAugment, time_warp
from asr.model.asr_model import ASRModel
from asr.model.attention import RelPositionMultiHeadAttention, attend
from asr.model.positional import relative_positions
from tests.conftest import tiny_model_config

SUBSAMPLINGS = {"conv2d4": 4, "conv2d6": 6, "conv2d8": 8, "conv1d2": 2}


def make_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([16000, 11000, 4000])
    waves = torch.randn(3, 16000, generator=g) * 0.1
    for i, n in enumerate(lengths):
        waves[i, n:] = 0.0
    targets = torch.full((3, 6), -1)
    target_lengths = torch.tensor([6, 4, 2])
    for i, n in enumerate(target_lengths):
        targets[i, :n] = torch.randint(2, 29, (int(n),), generator=g)
    return waves, lengths, targets, target_lengths


@pytest.mark.parametrize("subsampling", SUBSAMPLINGS)
@pytest.mark.parametrize("positional", ["abs", "rel"])
def test_padded_utterance_encodes_as_alone(subsampling, positional):
    torch.manual_seed(0)
    model = ASRModel(tiny_model_config(subsampling, positional)).eval()
    waves, lengths, _, _ = make_batch()
    with torch.no_grad():
        batched = model.encode(waves, lengths)
        for i in range(3):
            alone = model.encode(waves[i : i + 1, : lengths[i]], lengths[i : i + 1])
            n = int(alone.lengths[0])
            assert int(batched.lengths[i]) == n
            torch.testing.assert_close(batched.hidden[i, :n], alone.hidden[0], atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("subsampling,rate", SUBSAMPLINGS.items())
def test_subsampling_rate_and_lengths(subsampling, rate):
    model = ASRModel(tiny_model_config(subsampling)).eval()
    waves, lengths, _, _ = make_batch()
    with torch.no_grad():
        out = model.encode(waves, lengths)
    frames = model.frontend.num_frames(lengths)
    assert out.hidden.shape[1] == int(out.lengths.max())
    # Each encoder frame stands for `rate` feature frames (within a kernel's worth at the edges).
    assert torch.all((frames / rate - out.lengths).abs() <= 2)


def test_attention_weights_match_fast_path_and_sum_to_one():
    torch.manual_seed(0)
    model = ASRModel(tiny_model_config(positional="rel")).eval()
    waves, lengths, targets, target_lengths = make_batch()
    with torch.no_grad():
        fast = model.encode(waves, lengths)
        slow = model.encode(waves, lengths, need_weights=True)
        torch.testing.assert_close(fast.hidden, slow.hidden, atol=1e-5, rtol=1e-4)
        assert len(slow.self_attention) == 2
        b, t = slow.hidden.shape[:2]
        for w in slow.self_attention:
            assert w.shape == (b, 4, t, t)
            torch.testing.assert_close(w.sum(-1), torch.ones(b, 4, t))
            # no weight on padded frames
            assert float(w[1, :, :, int(slow.lengths[1]):].abs().sum()) == 0.0
        tokens_in, _, in_lengths = model.decoder_io(targets, target_lengths)
        dec_fast = model.decoder(tokens_in, in_lengths, slow.hidden, slow.mask)
        dec = model.decoder(tokens_in, in_lengths, slow.hidden, slow.mask, need_weights=True)
        torch.testing.assert_close(dec_fast.logits, dec.logits, atol=1e-5, rtol=1e-4)
        for w in dec.cross_attention:
            assert w.shape == (b, 4, tokens_in.shape[1], t)
            torch.testing.assert_close(w.sum(-1), torch.ones(b, 4, tokens_in.shape[1]))


@pytest.mark.parametrize("exporting", [False, True])
def test_rows_that_share_keys_attend_as_with_a_copy_of_them_each(exporting, monkeypatch):
    """Key/value rows shared by runs of query rows (the beams of 2 utterances, 3 rows each) give
    what a copy of the keys and values for every query row gives, on the fast path and in the
    explicit form an ONNX export traces."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(6, 4, 2, 8, generator=g)
    k, v = torch.randn(2, 4, 5, 8, generator=g), torch.randn(2, 4, 5, 8, generator=g)
    expected, _ = attend(q, k.repeat_interleave(3, 0), v.repeat_interleave(3, 0), None, 0.0, False)
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: exporting)
    got, _ = attend(q, k, v, None, 0.0, False)
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(expected[0], expected[3], atol=1e-3)  # the utterances' rows differ


def test_decoder_cache_matches_full_pass():
    torch.manual_seed(0)
    model = ASRModel(tiny_model_config()).eval()
    waves, lengths, targets, target_lengths = make_batch()
    with torch.no_grad():
        enc = model.encode(waves, lengths)
        tokens_in, _, in_lengths = model.decoder_io(targets, target_lengths)
        full = model.decoder(tokens_in, torch.full_like(in_lengths, tokens_in.shape[1]), enc.hidden, enc.mask)
        cache = model.decoder.init_cache(enc.hidden)
        steps = []
        for i in range(tokens_in.shape[1]):
            logits, cache, _ = model.decoder.step(tokens_in[:, i : i + 1], cache, enc.mask)
            steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full.logits, atol=1e-5, rtol=1e-4)


def test_relative_attention_uses_the_distance_between_positions():
    torch.manual_seed(0)
    attn = RelPositionMultiHeadAttention(8, 2).eval()
    t = 5
    x = torch.randn(1, t, 8)
    pos = relative_positions(t, 8)
    _, weights = attn(x, pos, need_weights=True)
    q = attn.split_heads(attn.query(x))
    k, _ = attn.project_kv(x)
    p = attn.split_heads(attn.pos(pos[None]))  # row r holds distance (t-1) - r
    expected = torch.empty(1, 2, t, t)
    for i in range(t):
        for j in range(t):
            r = (t - 1) - (i - j)
            content = (q[0, :, i] + attn.pos_bias_u) * k[0, :, j]
            position = (q[0, :, i] + attn.pos_bias_v) * p[0, :, r]
            expected[0, :, i, j] = (content.sum(-1) + position.sum(-1)) / math.sqrt(4)
    torch.testing.assert_close(weights, torch.softmax(expected, -1), atol=1e-5, rtol=1e-4)


def test_hybrid_loss_weights_ctc_and_attention():
    torch.manual_seed(0)
    config = tiny_model_config()
    config.ctc_weight = 0.3
    model = ASRModel(config).eval()
    out = model(*make_batch())
    torch.testing.assert_close(out.loss, 0.3 * out.ctc + 0.7 * out.attention)
    assert 0.0 <= float(out.accuracy) <= 1.0


def test_specaugment_masks_only_valid_frames_and_only_in_training():
    aug = SpecAugment(SpecAugmentConfig(num_freq_masks=2, max_freq_width=10, num_time_masks=2,
                                        max_time_width=20, time_warp=5))
    feats = torch.randn(2, 100, 80) + 5.0
    lengths = torch.tensor([100, 60])
    feats[1, 60:] = 7.0
    aug.eval()
    assert torch.equal(aug(feats, lengths), feats)
    aug.train()
    torch.manual_seed(3)
    out = aug(feats, lengths)
    assert out.shape == feats.shape
    assert torch.equal(out[1, 60:], feats[1, 60:])  # padding untouched
    assert (out == 0).any()  # some mask applied


def test_time_warp_keeps_shape_and_endpoints():
    torch.manual_seed(0)
    x = torch.arange(50.0)[:, None].repeat(1, 4)
    warped = time_warp(x, 5)
    assert warped.shape == x.shape
    assert float(warped[0, 0]) == pytest.approx(0.0, abs=0.6)
    assert torch.all(warped[1:, 0] >= warped[:-1, 0] - 1e-4)  # still monotone in time
