"""Named random streams (`ecomjax.core.keys`): stable ids, no two streams or (seed, step, problem) triples
sharing a key or an episode seed, and the collisions of the old salt + index scheme gone."""

import hashlib

import jax
import numpy as np
import pytest

from ecomjax.core.keys import (SEED_BITS, Stream, episode_seed, seed_key, seed_keys, stream_id, stream_key,
                               stream_seed, stream_seeds)

RUN_SEEDS, STEPS, PROBLEMS = 4, 1000, 4096         # 16.4M training problems: 4 runs of 1,000 steps at 4,096 envs
ROUNDS = 16                                       # problem batches per step (1 + max_resample_rounds)


def _old_episode_seed(run_seed: int, step: int, problem: int) -> int:
    """The trainer's previous episode seed, linear in (seed, step, problem)."""
    return (run_seed * 1_000_003 + step * 65_537 + problem * 257 + 11) % (2**31 - 1)


def test_stream_ids_are_distinct_stable_32_bit_hashes_of_the_names():
    ids = [stream_id(s) for s in Stream]
    assert len(set(ids)) == len(ids) == len({s.value for s in Stream})
    assert all(0 < i < 2**32 for i in ids)                      # 0 is `rng_for`'s customer-template stream
    for s in Stream:
        assert stream_id(s) == int.from_bytes(hashlib.sha256(s.value.encode()).digest()[:4], "big")
    # Pinned: changing the derivation changes which episodes every seed trains and evaluates on.
    assert episode_seed(0, 0, 0) == 3515850707089412007
    assert stream_seed(Stream.EVAL_PROBLEM, 0, 0, 0, 0) == stream_seeds(Stream.EVAL_PROBLEM, 0, 0, 0, [0])[0]


def test_no_two_training_problems_share_an_episode_seed():
    seeds = stream_seeds(Stream.TRAIN_PROBLEM, np.arange(RUN_SEEDS)[:, None, None], np.arange(STEPS)[None, :, None],
                         np.arange(PROBLEMS)[None, None, :]).ravel()
    assert seeds.dtype == np.int64 and seeds.min() >= 0 and seeds.max() < 2**SEED_BITS
    others = [stream_seeds(Stream.EVAL_PROBLEM, np.arange(RUN_SEEDS)[:, None, None, None],
                           np.arange(8)[None, :, None, None], np.arange(21)[None, None, :, None],
                           np.arange(256)[None, None, None, :]),
              stream_seeds(Stream.WARMSTART_PROBLEM, np.arange(RUN_SEEDS)[:, None], np.arange(PROBLEMS)[None, :]),
              stream_seeds(Stream.HELDOUT_PROBLEM, np.arange(PROBLEMS))]
    every = np.concatenate([seeds] + [o.ravel() for o in others])
    every.sort()
    assert not (every[1:] == every[:-1]).any()


def test_the_old_schemes_counterexamples_no_longer_collide():
    assert _old_episode_seed(1, 0, 0) == _old_episode_seed(0, 8, 1851)        # seeds 0 and 1 shared episodes
    assert episode_seed(1, 0, 0) != episode_seed(0, 8, 1851)
    base = seed_key(0)
    sample_round_4 = stream_key(base, Stream.TRAIN_SAMPLE, 0, 4)               # old: salt 13 + 4 == 17 + 0
    rollout_round_0 = stream_key(base, Stream.TRAIN_ROLLOUT, 0, 0)
    assert not np.array_equal(jax.random.key_data(sample_round_4), jax.random.key_data(rollout_round_0))


def test_no_two_streams_steps_or_rounds_share_a_key():
    steps, rounds = (x.ravel() for x in np.meshgrid(np.arange(100), np.arange(ROUNDS)))
    base = seed_key(3)
    data = [jax.random.key_data(jax.vmap(lambda t, r, s=s: stream_key(base, s, t, r))(steps, rounds)) for s in Stream]
    rows = np.concatenate([np.asarray(d) for d in data])
    assert len(np.unique(rows, axis=0)) == len(rows) == len(Stream) * len(steps)
    eager = stream_key(base, Stream.TRAIN_SAMPLE, int(steps[7]), int(rounds[7]))
    np.testing.assert_array_equal(jax.random.key_data(eager), np.asarray(data[list(Stream).index(Stream.TRAIN_SAMPLE)])[7])


def test_seed_keys_keep_all_64_bits_and_match_jax_below_2_32():
    small = [0, 7, 2**31, 2**32 - 1]
    np.testing.assert_array_equal(jax.random.key_data(seed_keys(small)),
                                  np.stack([jax.random.key_data(jax.random.key(s)) for s in small]))
    wide = np.asarray(jax.random.key_data(seed_keys([0, 2**32, 2**40, 2**63 - 1, 2**64 - 1])))
    assert len(np.unique(wide, axis=0)) == len(wide)                # jax.random.key(2**32) is key(0) without x64
    np.testing.assert_array_equal(jax.random.key_data(seed_key(2**40)), wide[2])
    np.testing.assert_array_equal(jax.random.key_data(stream_key(2**40, Stream.TRAIN_SAMPLE)),
                                  jax.random.key_data(stream_key(seed_key(2**40), Stream.TRAIN_SAMPLE)))


@pytest.mark.skipif(not hasattr(jax, "enable_x64"), reason="jax.enable_x64 not available in this jax")
def test_seed_keys_do_not_depend_on_64_bit_mode():
    seeds = [5, 2**32 + 5, 2**62 + 1]
    plain = np.asarray(jax.random.key_data(seed_keys(seeds)))
    with jax.enable_x64(True):
        wide = np.asarray(jax.random.key_data(seed_keys(seeds)))
    np.testing.assert_array_equal(plain, wide)


@pytest.mark.parametrize("bad", [-1, 2**64, 1.5, True, "3"])
def test_indices_and_seeds_must_be_non_negative_64_bit_integers(bad):
    with pytest.raises(ValueError, match=r"\[0, 2\*\*64\)"):
        stream_seed(Stream.TRAIN_PROBLEM, 0, bad)
    with pytest.raises(ValueError, match=r"\[0, 2\*\*64\)"):
        seed_keys([bad])


def test_key_indices_must_fit_32_bits():
    assert stream_seed(Stream.TRAIN_PROBLEM, 2**64 - 1, 0, 0) >= 0
    with pytest.raises(ValueError, match=r"TRAIN_SAMPLE index 1: expected an integer in \[0, 2\*\*32\)"):
        stream_key(0, Stream.TRAIN_SAMPLE, 0, 2**32)
    with pytest.raises(ValueError, match="index 0"):
        stream_key(0, Stream.TRAIN_SAMPLE, -1)
