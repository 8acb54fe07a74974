"""Captioning metrics the DCASE / AAC way: BLEU-1..4, METEOR, ROUGE-L, CIDEr-D, SPICE and SPIDEr,
each clip's prediction scored against all of its references, after PTB tokenisation.

The scores come from pycocoevalcap (`pip install 'clsp[caption]'`), the coco-caption code that DCASE
task 6's caption-evaluation-tools wrap; its `Cider` is CIDEr-D (clipped n-gram counts, a Gaussian
length penalty with sigma 6, times 10). Its wheel ships the PTB tokenizer, METEOR 1.5 (with its
paraphrase table) and SPICE, but not the Stanford CoreNLP 3.6.0 jars SPICE needs, which it would
download on first use; clsp never lets it: without them SPICE (and so SPIDEr) is reported
unavailable with the command that fetches them. METEOR, SPICE and the PTB tokenizer run on Java.
(aac-metrics was not chosen: it needs transformers < 5 and torchaudio through msclap, accepts Java
8 to 13 only, and downloads every jar at run time.)

A metric that cannot run is never scored zero: it is left out of `scores` and named in
`unavailable` with the reason. SPIDEr = (CIDEr-D + SPICE) / 2, only when both ran.

Tokenisation: "ptb" is Stanford's PTBTokenizer (Java) as DCASE runs it; "simple" is a Python
approximation (lower case, clitics split, brackets as -lrb-/-rrb-, PTB's punctuation dropped: the
same tokens on plain captions, not on every string); "auto" takes "ptb" when Java runs. The result
says which one ran, and why.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from clsp.errors import UserError

METRICS = ("BLEU_1", "BLEU_2", "BLEU_3", "BLEU_4", "METEOR", "ROUGE_L", "CIDEr-D", "SPICE", "SPIDEr")
TOKENIZERS = ("auto", "ptb", "simple")
INSTALL = "pip install 'clsp[caption]'"
SPICE_FETCH = "python -m pycocoevalcap.spice.get_stanford_models"  # once, with network: ~400 MB


def caption_metrics(predictions: Sequence[str], references: Sequence[Sequence[str]], *,
                    metrics: Sequence[str] = METRICS, tokenizer: str = "auto") -> dict:
    """Score one predicted caption per clip against that clip's references.

    Returns {"scores": {metric: float}, "unavailable": {metric: why}, "tokenization": str, "clips": n}
    for the asked `metrics` (default: all of METRICS).
    """
    _check(predictions, references, metrics, tokenizer)
    wanted = list(dict.fromkeys(metrics))
    result = {"scores": {}, "unavailable": {}, "tokenization": "", "clips": len(predictions)}
    try:
        import pycocoevalcap  # noqa: F401
    except ImportError:
        return _none(result, wanted, f"pycocoevalcap is not installed ({INSTALL})")
    java = java_problem()
    try:
        gts, res, result["tokenization"] = _tokenized(predictions, references, tokenizer, java)
    except RuntimeError as exc:
        return _none(result, wanted, str(exc))
    for name in wanted:
        if name == "SPIDEr" or name in result["scores"]:  # BLEU_1..4 come from one scorer
            continue
        try:
            for key, value in _score(name, gts, res, java).items():
                if key in wanted:
                    result["scores"][key] = value
        except _Unavailable as exc:
            result["unavailable"][name] = str(exc)
    if "SPIDEr" in wanted:
        _spider(result, gts, res, java)
    return result


class _Unavailable(Exception):
    """A metric that cannot run here; the message says why."""


def _none(result: dict, wanted: list[str], why: str) -> dict:
    result["unavailable"] = {name: why for name in wanted}
    return result


def _check(predictions, references, metrics, tokenizer) -> None:
    if tokenizer not in TOKENIZERS:
        raise UserError(f"unknown caption tokenizer {tokenizer!r}", f"choose one of {TOKENIZERS}")
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise UserError(f"unknown captioning metric(s) {unknown}" if unknown else "no captioning metrics asked",
                        f"choose from {METRICS}")
    if len(predictions) != len(references) or not predictions:
        raise UserError(f"{len(predictions)} predictions for {len(references)} reference lists",
                        "give one prediction and a list of references per clip")
    for i, (pred, refs) in enumerate(zip(predictions, references)):
        if not isinstance(pred, str) or isinstance(refs, str) or not refs or not all(isinstance(r, str) for r in refs):
            raise UserError(f"clip {i}: a prediction must be a string and its references a non-empty list of strings")


# ------------------------------------------------------------------ Java and tokenisation


@lru_cache(maxsize=1)
def java_problem() -> str | None:
    """None when a `java` runs here, else why not (METEOR, SPICE and the PTB tokenizer need it)."""
    java = shutil.which("java")
    if java is None:
        return "Java is not installed (no `java` on PATH)"
    try:
        done = subprocess.run([java, "-version"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`java -version` failed: {exc}"
    return None if done.returncode == 0 else f"`java -version` exited {done.returncode}"


_PTB_DROPPED = {"''", "'", "``", "`", '"', ".", "?", "!", ",", ":", "-", "--", "...", ";"}
_BRACKETS = {"(": " -lrb- ", ")": " -rrb- ", "[": " -lsb- ", "]": " -rsb- ", "{": " -lcb- ", "}": " -rcb- "}
_TOKEN = re.compile(r"-l[rsc]b-|-r[rsc]b-|n't|'(?:s|re|ve|ll|d|m)\b|\d+(?:[,.]\d+)+|\w+(?:[-./&']\w+)*|\S")


def simple_tokenize(text: str) -> str:
    """A Python approximation of `PTBTokenizer -lowerCase` with pycocoevalcap's punctuation removal."""
    text = " ".join(text.lower().split())
    text = re.sub(r"[()\[\]{}]", lambda m: _BRACKETS[m.group()], text)
    text = re.sub(r"(\w)n't\b", r"\1 n't", text)
    text = re.sub(r"(\w)'(s|re|ve|ll|d|m)\b", r"\1 '\2", text)
    return " ".join(t for t in _TOKEN.findall(text) if t not in _PTB_DROPPED)


def _tokenized(predictions, references, tokenizer: str, java: str | None):
    """(gts, res, how): pycocoevalcap's inputs, {clip: [tokenized refs]} and {clip: [tokenized prediction]}."""
    if tokenizer == "simple":
        how = "simple (Python approximation of the PTB tokenizer)"
        return _split({("ref", i): [simple_tokenize(r) for r in refs] for i, refs in enumerate(references)},
                      {("pred", i): [simple_tokenize(p)] for i, p in enumerate(predictions)}, how)
    why = java
    if why is None:
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        # One line per caption: any line break inside one (\r, \u2028, ...) would shift every later line.
        captions = {("ref", i): [{"caption": " ".join(r.split())} for r in refs] for i, refs in enumerate(references)}
        captions.update({("pred", i): [{"caption": " ".join(p.split())}] for i, p in enumerate(predictions)})
        try:  # one JVM for references and predictions
            tokens = PTBTokenizer().tokenize(captions)
            return _split(tokens, tokens, "ptb (Stanford PTBTokenizer, as DCASE)")
        except (OSError, subprocess.SubprocessError, KeyError) as exc:  # e.g. a read-only site-packages
            why = f"the PTB tokenizer failed: {exc}"
    if tokenizer == "ptb":
        raise RuntimeError(f"PTB tokenisation cannot run: {why}")
    gts, res, _ = _tokenized(predictions, references, "simple", None)
    return gts, res, f"simple (Python approximation of the PTB tokenizer; {why})"


def _split(refs: dict, preds: dict, how: str):
    n = sum(1 for key in preds if key[0] == "pred")
    return ({i: refs[("ref", i)] for i in range(n)}, {i: preds[("pred", i)] for i in range(n)}, how)


# ------------------------------------------------------------------ the scorers


def _score(name: str, gts: dict, res: dict, java: str | None) -> dict[str, float]:
    """{metric: score} from one pycocoevalcap scorer (BLEU gives all four)."""
    if name.startswith("BLEU"):
        from pycocoevalcap.bleu.bleu import Bleu

        values, _ = Bleu(4).compute_score(gts, res, verbose=0)
        return {f"BLEU_{n}": float(v) for n, v in enumerate(values, 1)}
    if name == "ROUGE_L":
        from pycocoevalcap.rouge.rouge import Rouge

        return {name: float(Rouge().compute_score(gts, res)[0])}
    if name == "CIDEr-D":
        return {name: _cider_d(gts, res)}
    if java is not None:
        raise _Unavailable(f"{name} runs on Java: {java}")
    return {name: _meteor(gts, res) if name == "METEOR" else _spice(gts, res)}


def _cider_d(gts: dict, res: dict) -> float:
    if len(gts) < 2:  # its idf comes from the evaluated references: every weight is 0 for one clip
        raise _Unavailable("CIDEr-D needs at least 2 clips (its idf comes from the evaluated clips' references)")
    from pycocoevalcap.cider.cider import Cider

    return float(Cider().compute_score(gts, res)[0])


def _meteor(gts: dict, res: dict) -> float:
    from pycocoevalcap.meteor.meteor import Meteor

    try:
        scorer = Meteor()
        try:
            score = float(scorer.compute_score(gts, res)[0])
        finally:
            del scorer  # its __del__ ends the JVM
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        raise _Unavailable(f"METEOR 1.5 failed: {' '.join(str(exc).split())[:200]}") from exc
    return _finite("METEOR", score)


def spice_jars() -> list[Path]:
    """The Stanford CoreNLP 3.6.0 jars SPICE needs, where pycocoevalcap looks for them."""
    from pycocoevalcap.spice import get_stanford_models as fetch

    lib = Path(fetch.SPICEDIR) / fetch.SPICELIB
    return [lib / f"{fetch.JAR}.jar", lib / f"{fetch.JAR}-models.jar"]


def _spice(gts: dict, res: dict) -> float:
    missing = [jar for jar in spice_jars() if not jar.exists()]
    if missing:
        raise _Unavailable(f"SPICE needs Stanford CoreNLP 3.6.0 ({missing[0].name} is not in {missing[0].parent}); "
                           f"clsp never downloads at run time: fetch it once with `{SPICE_FETCH}`")
    from pycocoevalcap.spice.spice import Spice

    try:
        score = float(Spice().compute_score(gts, res)[0])  # the jars exist, so Spice() downloads nothing
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        raise _Unavailable(f"SPICE failed: {' '.join(str(exc).split())[:200]}") from exc
    return _finite("SPICE", score)


def _finite(name: str, score: float) -> float:
    if not math.isfinite(score):
        raise _Unavailable(f"{name} gave no finite score ({score})")
    return score


def _spider(result: dict, gts: dict, res: dict, java: str | None) -> None:
    """SPIDEr from CIDEr-D and SPICE, computed here if they were not asked for themselves."""
    scores, unavailable = result["scores"], result["unavailable"]
    parts = {}
    for name in ("CIDEr-D", "SPICE"):
        if name in scores:
            parts[name] = scores[name]
        elif name not in unavailable:
            try:
                parts[name] = _score(name, gts, res, java)[name]
            except _Unavailable as exc:
                unavailable.setdefault("SPIDEr", f"needs {name}: {exc}")
        else:
            unavailable.setdefault("SPIDEr", f"needs {name}, which is unavailable (see {name})")
    if len(parts) == 2:
        scores["SPIDEr"] = (parts["CIDEr-D"] + parts["SPICE"]) / 2
