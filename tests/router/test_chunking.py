import pytest

from subsecond.router.chunking import SentenceChunker


def stream(pieces: list[str]) -> list[str]:
    chunker = SentenceChunker()
    out = [sentence for piece in pieces for sentence in chunker.feed(piece)]
    tail = chunker.flush()
    return [*out, tail] if tail else out


@pytest.mark.parametrize(
    ("pieces", "expected"),
    [
        (["Hello", " world.", " How", " are you?", " Fine"], ["Hello world. ", "How are you? ", "Fine"]),
        (["Pi is 3.", "14 exactly. Yes."], ["Pi is 3.14 exactly. ", "Yes."]),
        (["Ask Dr. Smith", " today. Then rest."], ["Ask Dr. Smith today. ", "Then rest."]),
        (["Use e.g. a list. Done"], ["Use e.g. a list. ", "Done"]),
        (["J. R. R. Tolkien wrote it. Really!"], ["J. R. R. Tolkien wrote it. ", "Really!"]),
        (["Wow!! Really?! ", "Yes."], ["Wow!! ", "Really?! ", "Yes."]),
        (['He said "stop." Then', " left."], ['He said "stop." ', "Then left."]),
        (["Title\n\nBody text"], ["Title\n\n", "Body text"]),
        (["no end"], ["no end"]),
    ],
)
def test_sentences(pieces: list[str], expected: list[str]) -> None:
    assert stream(pieces) == expected


def test_nothing_is_lost() -> None:
    text = "One. Two? Three! 4.5 is a number. Dr. Who. End"
    pieces = [text[i : i + 3] for i in range(0, len(text), 3)]
    assert "".join(stream(pieces)) == text


def test_code_blocks_are_never_split() -> None:
    pieces = ["Run this. Then:\n``", "`python\nx = 1. \nprint(x)\n", "```\nDone. Bye"]
    assert stream(pieces) == ["Run this. ", "Then:\n", "```python\nx = 1. \nprint(x)\n```\n", "Done. ", "Bye"]


def test_dotted_initials_do_not_end_a_sentence() -> None:
    assert stream(["The U.S. economy grew. Next"]) == ["The U.S. economy grew. ", "Next"]
