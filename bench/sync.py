"""The project's lip-sync metric: put known speech on air, decode what went out, measure the mouth.

Every decoded frame's mouth opening (face-mesh inner-lip gap over face height) is cross-correlated with
the audio's energy envelope over the same frame. ``offset_ms`` is where the correlation peaks (positive:
the mouth lags the sound), ``correlation`` its Pearson value there.

    python bench/sync.py [--lipsync classic|wav2lip] [--speech syllables|espeak] [--seconds 12]

Also a library: tests call ``syllable_train``, ``measure`` and ``run_and_measure``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from broadcaster.face import landmarks as lm  # noqa: E402
from tests.run_cli import command  # noqa: E402

RATE = 48000


def syllable_train(seconds: float, rate: int = RATE, seed: int = 7) -> np.ndarray:
    """Speech-like float audio: voiced syllables (harmonics shaped by vowel formants) and pauses."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * rate), np.float32)
    vowels = ((800, 1200), (300, 2300), (500, 1900), (500, 900), (350, 800))
    at = 0.4
    while at < seconds - 0.6:
        length = rng.uniform(0.14, 0.32)
        f1, f2 = vowels[rng.integers(len(vowels))]
        n = int(length * rate)
        t = np.arange(n) / rate
        pitch = rng.uniform(110, 190) * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
        phase = 2 * np.pi * np.cumsum(pitch) / rate
        voice = np.zeros(n)
        for h in range(1, 40):
            f = h * pitch.mean()
            gain = np.exp(-(((f - f1) / 150) ** 2)) + 0.6 * np.exp(-(((f - f2) / 200) ** 2)) + 0.02
            voice += gain / h**0.5 * np.sin(h * phase)
        envelope = np.minimum(1, np.minimum(t / 0.03, (length - t) / 0.05))
        start = int(at * rate)
        out[start : start + n] += (voice * envelope / np.abs(voice).max() * 0.5).astype(np.float32)
        at += length + rng.uniform(0.08, 0.35)
    return out


def espeak_speech(path: Path, text: str) -> bool:
    """Write espeak-ng's rendering of ``text`` to ``path``; False when espeak-ng is not installed."""
    if shutil.which("espeak-ng") is None:
        return False
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(path), text], check=True, capture_output=True)
    return True


def write_wav(path: Path, audio: np.ndarray, rate: int = RATE) -> None:
    """Mono float audio as a 16-bit WAV."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())


@dataclass
class Measured:
    """Per decoded frame: mouth opening (NaN where no face was found) and audio energy."""

    fps: float
    opening: np.ndarray
    energy: np.ndarray


def measure(path: Path) -> Measured:
    """Decode a recording; mouth opening per video frame and the audio RMS over each frame."""
    frames: list[tuple[float, np.ndarray]] = []
    chunks: list[tuple[float, np.ndarray]] = []
    with av.open(str(path)) as container:
        fps = float(container.streams.video[0].average_rate or 25)
        for frame in container.decode(video=0, audio=0):
            when = float(frame.pts * frame.time_base)
            if isinstance(frame, av.VideoFrame):
                frames.append((when, frame.to_ndarray(format="bgr24")))
            else:
                chunks.append((when, frame.to_ndarray().mean(axis=0)))
    audio_start = chunks[0][0]
    audio = np.concatenate([c for _, c in chunks]).astype(np.float64)
    opening = np.full(len(frames), np.nan)
    energy = np.zeros(len(frames))
    with lm.FaceLandmarker(tracking=True) as finder:
        for i, (when, image) in enumerate(frames):
            points = finder.detect(image)
            if points is not None:
                opening[i] = lm.mouth_opening(points)
            a = round((when - audio_start) * RATE)
            window = audio[max(0, a) : max(0, a + int(RATE / fps))]
            energy[i] = float(np.sqrt(np.mean(window**2))) if len(window) else 0.0
    return Measured(fps, opening, energy)


def correlate(m: Measured, max_lag_s: float = 0.2) -> tuple[float, float]:
    """(offset_ms, correlation): the lag of the mouth behind the energy that correlates best."""
    keep = ~np.isnan(m.opening)
    mouth = np.where(keep, m.opening, np.nanmean(m.opening))
    max_lag = round(max_lag_s * m.fps)
    scores = []
    for lag in range(-max_lag, max_lag + 1):
        a = m.energy[max(0, -lag) : len(m.energy) - max(0, lag)]
        b = mouth[max(0, lag) : len(mouth) - max(0, -lag)]
        scores.append(float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else 0.0)
    best = int(np.argmax(scores))
    shift = 0.0
    if 0 < best < len(scores) - 1:
        left, mid, right = scores[best - 1], scores[best], scores[best + 1]
        curve = left - 2 * mid + right
        shift = 0.5 * (left - right) / curve if curve < 0 else 0.0
    return (best - max_lag + shift) * 1000 / m.fps, scores[best]


def run_and_measure(
    wav: Path,
    workdir: Path,
    avatar_root: Path,
    lipsync: str = "classic",
    seconds: float = 12.0,
    extra: tuple[str, ...] = (),
) -> dict[str, float]:
    """Run the program with ``wav`` on air into a recording, then measure its sync."""
    recording = workdir / "sync.mp4"
    args = [
        "run",
        "--for",
        str(seconds),
        "--play-wav",
        str(wav),
        "--output",
        str(recording),
        "--set",
        f"avatar.dir={json.dumps(str(avatar_root))}",
        "--set",
        f"face.lipsync={json.dumps(lipsync)}",
        *extra,
    ]
    done = subprocess.run(
        command(*args), cwd=workdir, capture_output=True, text=True, timeout=seconds + 120, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"the program failed ({done.returncode}): {done.stderr[-3000:]}")
    found = sorted(workdir.glob("sync*.mp4"))
    m = measure(found[0])
    offset_ms, correlation = correlate(m)
    return {
        "offset_ms": round(offset_ms, 1),
        "correlation": round(correlation, 3),
        "frames": len(m.opening),
        "faces_found": int(np.count_nonzero(~np.isnan(m.opening))),
    }


def program_audio(path: Path) -> np.ndarray:
    """A recording's sound as mono float, indexed by program sample (placed by each frame's pts)."""
    pieces: list[tuple[int, np.ndarray]] = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            pieces.append((round(frame.pts * frame.time_base * RATE), frame.to_ndarray().mean(axis=0)))
    end = max(at + len(x) for at, x in pieces)
    out = np.zeros(end, np.float64)
    for at, x in pieces:
        if at >= 0:
            out[at : at + len(x)] = x
    return out


def locate(recorded: np.ndarray, reference: np.ndarray, expected: int, search_s: float = 0.3) -> int:
    """Where ``reference`` best matches ``recorded``, searched within ``search_s`` of ``expected``."""
    span = round(search_s * RATE)
    lo = max(0, expected - span)
    window = recorded[lo : expected + span + len(reference)]
    ref = reference.astype(np.float64)
    size = 1 << int(np.ceil(np.log2(len(window) + len(ref))))
    scores = np.fft.irfft(np.fft.rfft(window, size) * np.conj(np.fft.rfft(ref, size)), size)
    return lo + int(np.argmax(scores[: max(1, len(window) - len(ref) + 1)]))


async def passthrough_and_measure(
    speech: np.ndarray, workdir: Path, avatar_root: Path, extra: tuple[str, ...] = ()
) -> dict[str, float]:
    """Send ``speech`` (int16 mono, 48 kHz) as the console's mic in pass-through; measure where and
    how well it went on air.

    ``delay_error_ms``: where the voice is in the recording, minus where the fixed delay puts it (the
    first sample's capture plus ``voice_in.passthrough.delay_ms``, on the program clock); then the
    lip-sync metric of the recording (the voice is all that speaks in it).
    """
    from bench.mic_client import MicClient  # noqa: PLC0415
    from bench.voice_show import running_show  # noqa: PLC0415

    recording = workdir / "passthrough.mp4"
    seconds = len(speech) / RATE + 3.0
    overrides = [
        f"avatar.dir={json.dumps(str(avatar_root))}",
        'voice_in.mode="passthrough"',
        *extra,
    ]
    async with running_show(workdir, overrides, seconds, [str(recording)]) as show:
        mic = MicClient(show.port, show.token)
        await mic.open()
        await asyncio.sleep(0.5)
        first = await mic.stream(speech)
        delay_s = show.app.cfg.voice_in.passthrough.delay_ms / 1000
        expected = round(show.app.clock.sample_at(first + delay_s))
        summary = await show.finished(seconds + 30)
        await mic.close()
    found_file = recording if recording.exists() else sorted(workdir.glob("passthrough*.mp4"))[0]  # noqa: ASYNC240
    recorded = program_audio(found_file)
    found = locate(recorded, speech, expected)
    # where each stretch's voice first sounds on air, against where it should: a stretch whose start
    # was lost (its first word cut off) shows here, where the alignment above cannot see it
    reference = np.abs(speech.astype(np.float64))
    first = int(np.flatnonzero(reference > 0.05 * reference.max())[0])
    aired = np.abs(recorded[found : found + len(speech)])
    heard = np.flatnonzero(aired > 0.05 * aired.max()) if len(aired) else aired
    start_lost_ms = (int(heard[0]) - first) * 1000 / RATE if len(heard) else float("inf")
    m = measure(found_file)
    offset_ms, correlation = correlate(m)
    voice_in = summary.get("voice_in", {})
    return {
        "delay_ms": round(delay_s * 1000),
        "delay_error_ms": round((found - expected) * 1000 / RATE, 1),
        "start_lost_ms": round(start_lost_ms, 1),
        "offset_ms": round(offset_ms, 1),
        "correlation": round(correlation, 3),
        "stretches": voice_in.get("voice_stretches", 0) if isinstance(voice_in, dict) else 0,
        "frames": len(m.opening),
        "faces_found": int(np.count_nonzero(~np.isnan(m.opening))),
    }


def main() -> None:
    from broadcaster.face.builder import build_avatar  # noqa: PLC0415
    from tests.conftest import grace_hopper  # noqa: PLC0415

    parser = argparse.ArgumentParser()
    parser.add_argument("--lipsync", default="classic")
    parser.add_argument("--speech", choices=("syllables", "espeak"), default="syllables")
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--mic", action="store_true", help="send espeak speech as the console's mic")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        build_avatar(grace_hopper(), "sample", work / "avatars")
        if args.mic:
            print("RESULT " + json.dumps({"mode": "passthrough", **mic_speech_run(work, args.overrides)}))
            return
        wav = work / "speech.wav"
        text = "Good evening everyone, welcome back to the live room. Today we look at three new products."
        if args.speech == "espeak" and not espeak_speech(wav, text):
            raise SystemExit("espeak-ng is not installed")
        if args.speech == "syllables":
            write_wav(wav, syllable_train(args.seconds - 1.0))
        extra = tuple(x for item in args.overrides for x in ("--set", item))
        result = run_and_measure(wav, work, work / "avatars", args.lipsync, args.seconds, extra)
    print("RESULT " + json.dumps({"lipsync": args.lipsync, "speech": args.speech, **result}))


def mic_speech_run(work: Path, overrides: list[str]) -> dict[str, float]:
    """Pass-through of espeak-ng sentences (silence around and between them) as the console's mic."""
    from tests.speech_samples import silence, speech  # noqa: PLC0415

    lines = (
        "Good evening everyone, welcome back to the live room.",
        "Today we look at three new products, starting with the power bank.",
    )
    pcm = np.concatenate(
        [
            silence(1.0, RATE),
            speech(lines[0], RATE),
            silence(1.2, RATE),
            speech(lines[1], RATE),
            silence(1.0, RATE),
        ]
    )
    extra = tuple(f"{item}" for item in overrides)
    return asyncio.run(passthrough_and_measure(pcm, work, work / "avatars", extra))


if __name__ == "__main__":
    main()
