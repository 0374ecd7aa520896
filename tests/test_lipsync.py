import itertools
from pathlib import Path

import numpy as np
import pytest

from bench.sync import syllable_train
from broadcaster.config import AvatarConfig, ClassicConfig, Config
from broadcaster.face import landmarks as lm
from broadcaster.face.avatar import load_avatar
from broadcaster.face.compositor import Compositor, make_background
from broadcaster.face.i420 import planes, to_bgr
from broadcaster.face.lipsync import BACKENDS, create_lipsync
from broadcaster.face.lipsync.classic import ClassicLipSync
from broadcaster.face.lipsync.visemes import shapes_from_audio, viseme
from broadcaster.face.stage import Stage
from broadcaster.stream.clock import Timing
from broadcaster.voice.speech_track import Phoneme, SpeechFrame, SpeechTrack


def vowel(f1: float, f2: float, seconds: float = 0.4, rate: int = 48000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    out = np.zeros_like(t)
    for h in range(1, 40):
        f = 130 * h
        gain = np.exp(-(((f - f1) / 150) ** 2)) + 0.6 * np.exp(-(((f - f2) / 200) ** 2)) + 0.02
        out += gain * np.sin(2 * np.pi * f * t)
    return (0.4 * out / np.abs(out).max()).astype(np.float32)


def test_audio_shapes_open_for_sound_and_tell_spread_from_round_vowels() -> None:
    silence = np.zeros(9600, np.float32)
    a, i, u = vowel(800, 1200), vowel(300, 2300), vowel(320, 800)
    shapes = shapes_from_audio(np.concatenate([silence, a, silence, i, silence, u]), 48000, 1920)
    ticks = [5 + 2, 5 + 10 + 5 + 2, 2 * 15 + 5 + 2 + 5]
    opening = shapes[:, 0]
    assert opening[:4].max() == 0.0
    for k in ticks:
        assert opening[k] > 0.4
    wide_a, wide_i, wide_u = (float(shapes[k, 1]) for k in ticks)
    assert wide_i > wide_a > wide_u
    noise = np.random.default_rng(1).normal(0, 0.2, 19200).astype(np.float32)
    assert shapes_from_audio(noise, 48000, 1920)[3:7, 0].max() < opening[ticks[0]]


def test_visemes_cover_common_phoneme_spellings() -> None:
    assert viseme("m")[0] == 0.0 and viseme("p")[0] == 0.0
    assert viseme("a")[0] > viseme("e")[0] > viseme("i")[0]
    assert viseme("i")[1] > 0.9 and viseme("u")[1] < 0.2
    assert viseme("aI") == viseme("a")
    assert viseme("AA1") == viseme("aa")
    assert 0 < viseme("???")[0] < 1


def test_phoneme_timings_drive_the_shapes_when_given() -> None:
    lips = ClassicLipSync(ClassicConfig())
    track = SpeechTrack(prepare=lips.prepare)
    tone = np.tile(vowel(800, 1200, 0.4), 2)
    phonemes = [Phoneme(0.0, 0.3, "m"), Phoneme(0.3, 0.6, "a"), Phoneme(0.6, 0.8, "b")]
    utterance = track.append(tone, 48000, phonemes)
    assert utterance.ready.is_set()
    targets = [lips.target(SpeechFrame(utterance, k))[0] for k in range(20)]
    assert max(targets[:6]) < 0.05
    assert min(targets[8:14]) > 0.5
    assert max(targets[16:19]) < 0.05


def test_the_follower_opens_fast_closes_slower_and_rests_in_silence() -> None:
    lips = ClassicLipSync(ClassicConfig(attack_ms=20, release_ms=80))
    open_target = np.array([1.0, 0.5], np.float32)
    first = lips.follow(open_target)[0]
    assert first > 0.8
    for _ in range(5):
        lips.follow(open_target)
    closing = [float(lips.follow(np.array([0.0, 0.5], np.float32))[0]) for _ in range(20)]
    assert 0.3 < closing[0] < 0.9
    assert all(b < a for a, b in itertools.pairwise(closing))
    assert closing[-1] < 0.01


def test_the_mouth_opens_on_the_avatar_and_stays_put_outside_its_region(avatar_root: Path) -> None:
    avatar = load_avatar(avatar_root, "sample")
    stage = Stage(avatar, (1280, 720), AvatarConfig())
    lips = ClassicLipSync(ClassicConfig())
    track = SpeechTrack(prepare=lips.prepare)
    utterance = track.append(vowel(800, 1200, 1.0), 48000)
    rest = stage.picture(0.0, lips, None)
    for k in range(5):
        talking = stage.picture(0.0, lips, SpeechFrame(utterance, k))
    g, _ = stage.face(0)
    x, y, w, h = g.region
    changed = np.argwhere(np.abs(planes(talking)[0].astype(int) - planes(rest)[0]) > 2)
    assert len(changed) > 200
    assert changed[:, 0].min() >= y and changed[:, 0].max() < y + h
    assert changed[:, 1].min() >= x and changed[:, 1].max() < x + w
    with lm.FaceLandmarker() as finder:
        closed, opened = finder.detect(to_bgr(rest)), finder.detect(to_bgr(talking))
    assert closed is not None and opened is not None
    assert lm.mouth_opening(opened) > lm.mouth_opening(closed) + 0.03
    for _ in range(25):
        back = stage.picture(0.0, lips, None)
    assert np.array_equal(back, rest)


def test_preloaded_avatars_switch_at_the_next_tick(avatar_root: Path) -> None:
    one, two = load_avatar(avatar_root, "sample"), load_avatar(avatar_root, "sample")
    two = type(two)("second", two.folder, two.manifest, two.landmarks, two.mask)
    compositor = Compositor(
        (1280, 720),
        make_background((1280, 720), "#000000", Path()),
        [one, two],
        AvatarConfig(align="left"),
        ClassicLipSync(ClassicConfig()),
    )
    compositor.stages["second"] = Stage(two, (1280, 720), AvatarConfig(align="right"))
    assert compositor.stage.name == "sample"
    left = compositor.frame(0.0)
    compositor.switch("second")
    right = compositor.frame(0.04)
    assert compositor.stage.name == "second"
    assert planes(left)[0][:, :100].mean() > 20 and planes(left)[0][:, -100:].max() < 20
    assert planes(right)[0][:, -100:].mean() > 20 and planes(right)[0][:, :100].max() < 20
    with pytest.raises(KeyError, match="not preloaded"):
        compositor.switch("nobody")


def test_backends_are_chosen_by_name() -> None:
    assert set(BACKENDS) == {"classic", "wav2lip"}
    backend = create_lipsync(Config(), Timing(30))
    assert isinstance(backend, ClassicLipSync) and backend.samples_per_tick == 1600


def test_a_syllable_train_is_speech_like() -> None:
    audio = syllable_train(4.0)
    frames = audio[: 4 * 48000 // 1920 * 1920].reshape(-1, 1920)
    rms = np.sqrt((frames**2).mean(axis=1))
    assert (rms < 1e-4).sum() > 10 and (rms > 0.05).sum() > 20
