"""Sentence-level language models under DDP: 2 gloo processes give the same weights as one process."""

import torch

from latentnlp.data.sentences import SentenceVocabulary, collate_sentences
from latentnlp.models.language.rnnlm import RNNLanguageModel, RNNLMConfig
from latentnlp.models.language.sentence_vae import SentenceVAE, SentenceVAEConfig
from latentnlp.training.trainer import TrainConfig, Trainer
from tests.synthetic import assert_two_gloo_processes_match_one

SENTENCES = [s.split() for s in [
    "the cat sat on the mat", "a dog ran", "the dog sat", "prices fell sharply on monday", "the company said",
    "a cat ran on the mat", "shares rose", "the market fell", "it said prices rose", "a man ran home",
    "the mat is red", "dogs and cats",
]] * 2  # 24 sentences / batch 10: the last batch (4) splits 2 + 2


def _fit(ctx, vae: bool):
    vocab = SentenceVocabulary.build(SENTENCES)
    ids, _ = vocab.encode_all(SENTENCES)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        if vae:
            model = SentenceVAE(SentenceVAEConfig(vocab_size=len(vocab), embedding_dim=8, hidden_dim=8, latent_dim=3,
                                                  word_dropout=0.3, kl_schedule="linear", kl_anneal_steps=4))
        else:
            model = RNNLanguageModel(RNNLMConfig(vocab_size=len(vocab), embedding_dim=8, hidden_dim=8, num_layers=2))
    cfg = TrainConfig(epochs=2, batch_size=10, learning_rate=1e-2, seed=3, progress=False, patience=0, grad_clip=5.0)
    Trainer(model, cfg, len(ids), collate=lambda idx: collate_sentences([ids[i] for i in idx], vocab), ctx=ctx).fit()
    return model


def _fit_rnnlm(ctx):
    return _fit(ctx, vae=False)


def _fit_vae(ctx):
    return _fit(ctx, vae=True)


def test_rnnlm_two_gloo_processes_match_one(tmp_path, one_thread):
    assert_two_gloo_processes_match_one(_fit_rnnlm, tmp_path)


def test_sentence_vae_two_gloo_processes_match_one(tmp_path, one_thread):
    """Noise (z and the word-dropout seeds) comes from the Trainer and is sharded with the batch."""
    assert_two_gloo_processes_match_one(_fit_vae, tmp_path)
