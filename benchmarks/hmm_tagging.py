"""HMM part-of-speech tagging benchmark: unsupervised EM tag induction, EM speed, supervised tagger.

    python benchmarks/hmm_tagging.py [--data-dir DIR] [--sections unsupervised speed supervised]
        [--corpus treebank|ewt-xpos] [--seeds 0 1 2 3 4] [--iterations 1000] [--tol -inf]
        [--speed-iterations 5] [--threads 1] [--out benchmarks/results/hmm_tagging.json]
        [--estimator mle|vb] [--alpha-transition 0.1] [--alpha-emission 0.1] [--merge-from A.json B.json]
        [--lowercase] [--map-digits] [--rare-words unk|signature] [--rare-threshold 1]

Sections (each can run alone; results are merged into the JSON file, so a long
run can be split into pieces, e.g. ``--sections unsupervised --seeds 0 1`` then
``--seeds 2 3 4``):

(a) ``unsupervised``: Baum-Welch with 45 states on all words of the corpus
    (treebank: NLTK's WSJ sample, 3,914 sentences / 94,084 tokens; ewt-xpos: UD
    EWT train, 204,577 tokens, gold XPOS), one run per seed (random flat-Dirichlet
    start), at most ``--iterations`` EM iterations. Viterbi tags of the training
    sentences are scored against the gold tags (used for scoring only) by
    many-to-one, one-to-one accuracy and V-measure (also with posterior decoding,
    and M-1 every ``--eval-every`` iterations). The summary gives the mean
    (and standard deviation) over all stored seeds, and the scores of the seed
    with the highest final training log-likelihood.
    With ``--estimator vb`` the same section runs variational Bayes EM
    (``HMMConfig.estimator="vb"``, Johnson 2007) with symmetric Dirichlet priors
    ``--alpha-transition`` / ``--alpha-emission`` (pre-declared, default 0.1 each;
    never chosen by gold); decoding uses the posterior-mean parameters, the
    best restart is the one with the highest final ELBO, and results go under
    ``unsupervised_vb -> corpus -> "alpha_t=A,alpha_e=B"``. ``--merge-from``
    merges the VB runs of other result files (e.g. seeds run as separate
    processes) into ``--out`` without running anything.
    With word preprocessing (``--lowercase``, ``--map-digits``, ``--rare-words``,
    ``--rare-threshold``; :class:`latentnlp.data.wordforms.WordPreprocessor`) the
    HMM emits the mapped symbols (lower-cased, digits -> 0, words seen
    ``<= --rare-threshold`` times replaced by their orthographic signature class
    or ``<unk>``), while every original token is still scored against its gold
    tag. Results go under ``unsupervised_preprocessed -> corpus -> label`` (e.g.
    ``"lowercase,digits,rare<=1:signature"``; runs with ``--iterations`` other
    than 1000 get `` (N iterations)`` appended), merged by ``--merge-from`` too.

    Headline setting, declared before any run, for the issue-9 target (M-1 >= 50%
    at 45 states within 1,000 EM iterations): plain Baum-Welch (``--estimator
    mle``, random flat-Dirichlet start, 1,000 iterations, ``--tol -inf``) on the
    vocabulary ``--lowercase --map-digits --rare-words signature --rare-threshold 1``.
    Reason: this is the standard preprocessing of unsupervised POS induction
    (case/digit folding: Clark 2003; rare words as shape/suffix classes: the
    Berkeley parser's unknown-word signatures, Petrov et al. 2006, and the
    feature-based HMM of Berg-Kirkpatrick et al. 2010); threshold 1 (hapax
    legomena) is the usual rare-word cut-off and the toolkit's ``min_count=2``
    default. Nothing in it was chosen by gold tags; other preprocessing variants
    in the JSON are reported for information only and select nothing (their
    vocabularies differ, so not even likelihoods compare them).
(b) ``speed``: seconds per EM iteration (E-step + M-step) on the treebank sample
    at 45 states, from the same starting point: ours (scaled probability-space
    forward-backward, and the generic log-space core for reference) beside
    hmmlearn 0.3.3's ``CategoricalHMM`` (its default ``implementation="log"``
    and ``"scaling"``), same process, same data, same thread count.
(c) ``supervised``: add-k HMM tagger trained on UD EWT train (UPOS, words seen
    once become ``<unk>``), Viterbi accuracy on EWT test.

Needs the ``bench`` extra (hmmlearn) for (b).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from latentnlp.data.tagged import (
    build_tag_vocab,
    build_word_vocab,
    encode,
    read_conllu,
    read_treebank_zip,
    treebank_sample_path,
    ud_ewt_path,
)
from latentnlp.data.wordforms import RARE_WORD_MODES, WordPreprocessor
from latentnlp.evaluation.tagging import (
    accuracy,
    many_to_one_accuracy,
    one_to_one_accuracy,
    v_measure,
)
from latentnlp.models.sequence.hmm import HiddenMarkovModel
from latentnlp.structured.scaled_hmm import (
    pack_sentences,
    scaled_posteriors,
    unpack_rows,
)

N_STATES = 45
HEADLINE_PREPROCESSING = "lowercase,digits,rare<=1:signature"
HEADLINE_ROLE = "headline: pre-declared word preprocessing (see the module docstring), fixed before any run"
PREDECLARED_ALPHAS = (0.1, 0.1)  # VB headline prior (transition, emission); never tuned on gold


def load_corpus(name: str, data_dir: str | None):
    if name == "treebank":
        return read_treebank_zip(treebank_sample_path(data_dir))
    if name == "ewt-xpos":
        return read_conllu(ud_ewt_path("train", data_dir), "xpos")
    raise ValueError(f"unknown corpus {name!r}")


def encoded(corpus, preprocessor: WordPreprocessor | None = None):
    """Word ids, gold tag ids (scoring only). ``preprocessor=None``: every training word is its own symbol."""
    if preprocessor is None:
        words = build_word_vocab(corpus, min_count=1)  # every training word; nothing is <unk>
    else:
        words = preprocessor.build_vocab(corpus)  # looks at words only, never at tags
        corpus = preprocessor.transform(corpus, words)  # same sentences and lengths: scored per original token
    tags = build_tag_vocab(corpus)
    ids, gold = encode(corpus, words, tags)
    return words, ids, torch.cat(gold)


def preprocessor_of(args) -> WordPreprocessor | None:
    pre = WordPreprocessor(lowercase=args.lowercase, digits=args.map_digits, rare_words=args.rare_words,
                           rare_threshold=args.rare_threshold)
    return None if pre.is_identity and pre.rare_threshold == 0 else pre


def preprocessing_label(pre: WordPreprocessor) -> str:
    parts = (["lowercase"] if pre.lowercase else []) + (["digits"] if pre.digits else [])
    return ",".join(parts + [f"rare<={pre.rare_threshold}:{pre.rare_words}"])


def run_unsupervised(args) -> dict:
    corpus = load_corpus(args.corpus, args.data_dir)
    pre = preprocessor_of(args)
    words, ids, gold = encoded(corpus, pre)
    packed = pack_sentences(ids)

    def mbr(model):  # posterior (minimum Bayes risk) decoding by the scaled forward-backward
        gamma = scaled_posteriors(*(p.exp() for p in (model.log_init_, model.log_transition_, model.log_emission_)), packed)
        return torch.cat(unpack_rows(packed, gamma.argmax(-1)))

    runs = {}
    vb = args.estimator == "vb"
    for seed in args.seeds:
        model = HiddenMarkovModel(n_states=N_STATES, vocab_size=len(words), random_state=seed,
                                  estimator=args.estimator, alpha_transition=args.alpha_transition,
                                  alpha_emission=args.alpha_emission)
        model.fit_em(ids, n_iter=0)  # the random starting point of this seed
        history = list(model.log_likelihood_history_)
        objective = list(model.objective_history_)
        trajectory, done, converged, seconds = [], 0, False, 0.0
        while done < args.iterations and not converged:
            # EM in chunks of --eval-every iterations (each chunk re-scores its start: one extra E-step)
            t0 = time.perf_counter()
            model.fit_em(ids, n_iter=min(args.eval_every, args.iterations - done), tol=args.tol, init="current")
            seconds += time.perf_counter() - t0
            history += model.log_likelihood_history_[1:]
            objective += model.objective_history_[1:]
            done += model.n_iter_
            converged = model.converged_
            pred = mbr(model)
            trajectory.append({"iteration": done, "log_likelihood_per_token": history[-1] / corpus.n_tokens,
                               **({"elbo_per_token": objective[-1] / corpus.n_tokens} if vb else {}),
                               "many_to_one_posterior": many_to_one_accuracy(pred, gold)})
        pred = torch.cat(model.viterbi(ids))
        pred_mbr = mbr(model)
        runs[str(seed)] = {
            "many_to_one": many_to_one_accuracy(pred, gold),
            "one_to_one": one_to_one_accuracy(pred, gold),
            "v_measure": v_measure(pred, gold),
            "many_to_one_posterior": many_to_one_accuracy(pred_mbr, gold),
            "one_to_one_posterior": one_to_one_accuracy(pred_mbr, gold),
            "v_measure_posterior": v_measure(pred_mbr, gold),
            "final_log_likelihood": history[-1],
            "log_likelihood_per_token": history[-1] / corpus.n_tokens,
            **({"final_elbo": objective[-1], "elbo_per_token": objective[-1] / corpus.n_tokens,
                "elbo_min_step": min((b - a for a, b in itertools.pairwise(objective[1:])), default=0.0)}
               if vb else {}),
            "iterations": done,
            "converged": converged,
            "seconds": seconds,
            "max_iterations": args.iterations,
            "tol": args.tol,
            "trajectory": trajectory,
        }
        r = runs[str(seed)]
        print(f"[{args.corpus}{' VB' if vb else ''}] seed {seed}: {r['iterations']} iterations in {seconds:.0f} s, "
              + (f"ELBO/token {r['elbo_per_token']:.4f}, " if vb else "") + f"LL/token {r['log_likelihood_per_token']:.4f}, M-1 {100 * r['many_to_one']:.2f}%, "
              f"1-1 {100 * r['one_to_one']:.2f}%, VM {100 * r['v_measure']:.2f}% (Viterbi); "
              f"M-1 {100 * r['many_to_one_posterior']:.2f}% (posterior decoding); M-1 by iteration: "
              + ", ".join(f"{e['iteration']}: {100 * e['many_to_one_posterior']:.1f}" for e in trajectory), flush=True)
    out = {"corpus": args.corpus, "n_sentences": len(corpus), "n_tokens": corpus.n_tokens,
           "vocab_size": len(words), "n_states": N_STATES, "runs": runs}
    if pre is not None:
        out["word_preprocessing"] = pre.to_dict()
    if vb:
        out.update({"estimator": "vb", "alpha_transition": args.alpha_transition, "alpha_emission": args.alpha_emission,
                    "decoding_parameters": "posterior means (count + alpha) / (row total + K alpha)",
                    "restart_selection": "highest final ELBO"})
    return out


def summarise(section: dict) -> dict:
    runs = list(section["runs"].values())
    out = {"n_runs": len(runs)}
    for key in ("many_to_one", "one_to_one", "v_measure", "iterations", "many_to_one_posterior"):
        values = [r[key] for r in runs if key in r]
        if not values:
            continue
        out[f"mean_{key}"] = statistics.fmean(values)
        out[f"std_{key}"] = statistics.stdev(values) if len(values) > 1 else 0.0
    key = "final_elbo" if all("final_elbo" in r for r in runs) else "final_log_likelihood"
    best_seed, best = max(section["runs"].items(), key=lambda kv: kv[1][key])
    out["best_seed"] = int(best_seed)
    out["best_selected_by"] = key
    out["best"] = {k: best[k] for k in ("many_to_one", "one_to_one", "v_measure", "final_log_likelihood", "iterations",
                                        "final_elbo") if k in best}
    return out


def run_speed(args) -> dict:
    from hmmlearn import hmm

    corpus = load_corpus("treebank", args.data_dir)
    words, ids, _ = encoded(corpus)
    V, k = len(words), args.speed_iterations
    start = HiddenMarkovModel(n_states=N_STATES, vocab_size=V, random_state=0).fit_em(ids, n_iter=0)
    probs = [p.exp() for p in (start.log_init_, start.log_transition_, start.log_emission_)]
    X = torch.cat(ids).numpy()[:, None]
    lengths = [len(s) for s in ids]
    result = {"n_tokens": corpus.n_tokens, "n_states": N_STATES, "vocab_size": V, "iterations_timed": k}

    def ours(e_step: str, n_iter: int) -> tuple[float, list[float]]:
        model = HiddenMarkovModel(n_states=N_STATES, vocab_size=V, e_step=e_step)
        model.set_probabilities(*probs)
        t0 = time.perf_counter()
        model.fit_em(ids, n_iter=n_iter, tol=-math.inf, init="current")
        # fit_em does n_iter M-steps and n_iter + 1 E-steps (the first scores the start)
        return (time.perf_counter() - t0) / n_iter, model.log_likelihood_history_

    result["ours_scaled_s_per_iter"], ll_ours = ours("scaled", k)
    print(f"ours (scaled): {result['ours_scaled_s_per_iter']:.3f} s / iteration", flush=True)
    result["ours_log_space_s_per_iter"], _ = ours("log", 1)
    print(f"ours (generic log space): {result['ours_log_space_s_per_iter']:.3f} s / iteration", flush=True)
    for implementation in ("log", "scaling"):
        theirs = hmm.CategoricalHMM(n_components=N_STATES, n_features=V, n_iter=k, tol=-np.inf, init_params="",
                                    params="ste", implementation=implementation, random_state=0)
        theirs.startprob_, theirs.transmat_, theirs.emissionprob_ = (p.numpy() for p in probs)
        t0 = time.perf_counter()
        theirs.fit(X, lengths)
        seconds = (time.perf_counter() - t0) / k
        result[f"hmmlearn_{implementation}_s_per_iter"] = seconds
        # hmmlearn's monitor holds the log-likelihood before each M-step: ours' history[:-1]
        result[f"hmmlearn_{implementation}_max_rel_ll_diff"] = float(
            np.max(np.abs(np.array(theirs.monitor_.history) - np.array(ll_ours[:k])) / np.abs(ll_ours[:k]))
        )
        print(f"hmmlearn CategoricalHMM ({implementation}): {seconds:.3f} s / iteration", flush=True)
    result["speedup_vs_hmmlearn_log"] = result["hmmlearn_log_s_per_iter"] / result["ours_scaled_s_per_iter"]
    result["speedup_vs_hmmlearn_scaling"] = result["hmmlearn_scaling_s_per_iter"] / result["ours_scaled_s_per_iter"]
    return result


def run_supervised(args) -> dict:
    train = read_conllu(ud_ewt_path("train", args.data_dir), "upos")
    test = read_conllu(ud_ewt_path("test", args.data_dir), "upos")
    words = build_word_vocab(train, min_count=2)
    tags = build_tag_vocab(train)
    train_ids, train_tags = encode(train, words, tags)
    test_ids, test_tags = encode(test, words, tags, unknown_tag="minus_one")
    model = HiddenMarkovModel(n_states=len(tags), vocab_size=len(words))
    model.fit_supervised(train_ids, train_tags, smoothing=args.smoothing)
    pred, gold = torch.cat(model.viterbi(test_ids)), torch.cat(test_tags)
    known = torch.cat(test_ids) != words.unk_id
    result = {"train": "UD EWT train (UPOS)", "test": "UD EWT test (UPOS)", "n_test_tokens": test.n_tokens,
              "min_count": 2, "smoothing": args.smoothing, "accuracy": accuracy(pred, gold),
              "accuracy_known_words": accuracy(pred[known], gold[known]),
              "accuracy_unknown_words": accuracy(pred[~known], gold[~known]),
              "unknown_word_rate": float((~known).double().mean())}
    print(f"supervised HMM tagger, EWT test UPOS accuracy {100 * result['accuracy']:.2f}%", flush=True)
    return result


def vb_sections(results: dict):
    for corpus, by_alpha in results.get("unsupervised_vb", {}).items():
        for alphas, section in by_alpha.items():
            yield f"{corpus}, VB {alphas}", section


def preprocessed_sections(results: dict):
    for corpus, by_label in results.get("unsupervised_preprocessed", {}).items():
        for label, section in by_label.items():
            yield f"{corpus}, {label}", section


def print_table(results: dict) -> None:
    print("\n== HMM tagging benchmark ==")
    for corpus, section in [*results.get("unsupervised", {}).items(), *vb_sections(results),
                            *preprocessed_sections(results)]:
        s = section.get("summary")
        if not s:
            continue
        print(f"(a) unsupervised EM, 45 states, {corpus} ({section['n_tokens']} tokens), {s['n_runs']} restarts")
        print(f"    {'(Viterbi decoding)':28s} {'M-1':>7s} {'1-1':>7s} {'VM':>7s} {'iters':>6s}")
        print(f"    {'mean over restarts':28s} {100 * s['mean_many_to_one']:7.2f} {100 * s['mean_one_to_one']:7.2f} "
              f"{100 * s['mean_v_measure']:7.2f} {s['mean_iterations']:6.0f}")
        if "mean_many_to_one_posterior" in s:
            print(f"    {'mean M-1, posterior decoding':28s} {100 * s['mean_many_to_one_posterior']:7.2f}")
        b = s["best"]
        label = "best final ELBO" if s.get("best_selected_by") == "final_elbo" else "best training LL"
        best_label = f"{label} (seed {s['best_seed']})"
        print(f"    {best_label:28s} {100 * b['many_to_one']:7.2f} "
              f"{100 * b['one_to_one']:7.2f} {100 * b['v_measure']:7.2f} {b['iterations']:6d}"
              )
    sp = results.get("speed")
    if sp:
        print(f"(b) seconds per EM iteration, treebank sample, 45 states, {sp.get('threads')} torch thread(s)")
        for key in ("ours_scaled", "ours_log_space", "hmmlearn_log", "hmmlearn_scaling"):
            print(f"    {key:24s} {sp[key + '_s_per_iter']:8.3f}")
        print(f"    speed-up vs hmmlearn: {sp['speedup_vs_hmmlearn_log']:.1f}x (log), "
              f"{sp['speedup_vs_hmmlearn_scaling']:.1f}x (scaling)")
    su = results.get("supervised")
    if su:
        print(f"(c) supervised HMM tagger, EWT test UPOS: {100 * su['accuracy']:.2f}% "
              f"(known {100 * su['accuracy_known_words']:.2f}%, unknown {100 * su['accuracy_unknown_words']:.2f}%)")


def merge_vb(results: dict, corpus: str, alphas: str, section: dict) -> None:
    stored = results.setdefault("unsupervised_vb", {}).setdefault(corpus, {}).get(alphas, {"runs": {}})
    stored.update({k: v for k, v in section.items() if k not in ("runs", "summary")})
    stored["runs"].update(section["runs"])
    stored["summary"] = summarise(stored)
    stored["role"] = ("headline: the pre-declared prior (alpha_t = alpha_e = 0.1, a small symmetric prior as in "
                      "Johnson 2007), fixed before any run"
                      if (stored["alpha_transition"], stored["alpha_emission"]) == PREDECLARED_ALPHAS else
                      "sensitivity only: selected by nothing, shown for information")
    results["unsupervised_vb"][corpus][alphas] = stored


def merge_preprocessed(results: dict, corpus: str, label: str, section: dict) -> None:
    by_label = results.setdefault("unsupervised_preprocessed", {}).setdefault(corpus, {})
    stored = by_label.get(label, {"runs": {}})
    stored.update({k: v for k, v in section.items() if k not in ("runs", "summary")})
    stored["runs"].update(section["runs"])
    stored["summary"] = summarise(stored)
    if label == HEADLINE_PREPROCESSING:
        stored["role"] = HEADLINE_ROLE
    elif label.startswith(HEADLINE_PREPROCESSING + " ("):
        stored["role"] = "the headline setting run with fewer EM iterations (run time); see each run's max_iterations"
    else:
        stored["role"] = "alternative: reported for information, selected by nothing"
    by_label[label] = stored


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--sections", nargs="+", default=["unsupervised", "speed", "supervised"],
                   choices=["unsupervised", "speed", "supervised"])
    p.add_argument("--corpus", default="treebank", choices=["treebank", "ewt-xpos"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--iterations", type=int, default=1000, help="maximum EM iterations per restart")
    p.add_argument("--tol", type=float, default=-math.inf, help="EM tolerance, nats/token (default: run all iterations)")
    p.add_argument("--eval-every", type=int, default=100, help="score posterior decoding every N EM iterations")
    p.add_argument("--speed-iterations", type=int, default=5)
    p.add_argument("--smoothing", type=float, default=0.1, help="supervised add-k")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (hmmlearn is single-threaded)")
    p.add_argument("--estimator", default="mle", choices=["mle", "vb"],
                   help="unsupervised section: Baum-Welch (mle) or variational Bayes EM (vb, Johnson 2007)")
    p.add_argument("--alpha-transition", type=float, default=PREDECLARED_ALPHAS[0], help="VB: symmetric Dirichlet prior, transitions")
    p.add_argument("--alpha-emission", type=float, default=PREDECLARED_ALPHAS[1], help="VB: symmetric Dirichlet prior, emissions")
    p.add_argument("--lowercase", action="store_true", help="word preprocessing: lower-case every word")
    p.add_argument("--map-digits", action="store_true", help="word preprocessing: every digit becomes 0")
    p.add_argument("--rare-words", default="unk", choices=RARE_WORD_MODES,
                   help="word preprocessing: rare words become <unk> or their orthographic signature class")
    p.add_argument("--rare-threshold", type=int, default=0,
                   help="word preprocessing: words with training count <= this are rare (0: none)")
    p.add_argument("--merge-from", nargs="+", default=None,
                   help="only merge the unsupervised_vb / unsupervised_preprocessed runs of these result files into --out")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "hmm_tagging.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {}
    results["environment"] = {"python": sys.version.split()[0], "torch": torch.__version__, "platform": platform.platform(),
                              "cpu_count": os.cpu_count(), "threads": args.threads}
    if args.merge_from:
        for path in args.merge_from:
            other = json.loads(Path(path).read_text())
            for corpus, by_alpha in other.get("unsupervised_vb", {}).items():
                for alphas, section in by_alpha.items():
                    merge_vb(results, corpus, alphas, section)
            for corpus, by_label in other.get("unsupervised_preprocessed", {}).items():
                for label, section in by_label.items():
                    merge_preprocessed(results, corpus, label, section)
        args.sections = []
    elif "unsupervised" in args.sections and preprocessor_of(args) is not None:
        section = run_unsupervised(args)
        label = preprocessing_label(preprocessor_of(args))
        if args.estimator == "vb":
            label += f",vb:alpha_t={args.alpha_transition:g},alpha_e={args.alpha_emission:g}"
        if args.iterations != 1000:
            label += f" ({args.iterations} iterations)"  # kept apart from 1,000-iteration runs
        merge_preprocessed(results, args.corpus, label, section)
        args.sections = [s for s in args.sections if s != "unsupervised"]
    elif "unsupervised" in args.sections and args.estimator == "vb":
        section = run_unsupervised(args)
        merge_vb(results, args.corpus, f"alpha_t={args.alpha_transition:g},alpha_e={args.alpha_emission:g}", section)
        args.sections = [s for s in args.sections if s != "unsupervised"]
    if "unsupervised" in args.sections:
        section = run_unsupervised(args)
        stored = results.setdefault("unsupervised", {}).get(args.corpus, {"runs": {}})
        if stored.get("n_tokens") not in (None, section["n_tokens"]):
            stored = {"runs": {}}
        stored.update({k: v for k, v in section.items() if k != "runs"})
        stored["runs"].update(section["runs"])
        stored["summary"] = summarise(stored)
        results["unsupervised"][args.corpus] = stored
    if "speed" in args.sections:
        results["speed"] = {**run_speed(args), "threads": args.threads}
    if "supervised" in args.sections:
        results["supervised"] = run_supervised(args)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
