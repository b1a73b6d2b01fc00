"""Lines as real corpora have them: mojibake repaired, the few unusable lines named and left out.

Real corpora carry a few damaged lines. OpenNMT-py's toy English-German corpus (10,000 lines of WMT news)
has 11 lines holding C1 control characters (U+0080-U+009F): Windows-1252's dashes and quotes, whose bytes
0x80-0x9F were decoded as latin-1 somewhere upstream. Decoded text never holds a C1 control for any other
reason, so each one is repaired to the Windows-1252 character of its byte (U+0096 -> "–", U+0093 -> "“").
Five of the 32 bytes (0x81, 0x8D, 0x8F, 0x90, 0x9D) are not defined in Windows-1252: those are no
mojibake that can be undone, and stay control characters. ftfy's `fix_c1_controls` is the same rule.

A line that still cannot be used (a NUL or another control character, an empty side of a pair, a missing
column) is left out with one warning that counts them and names the first few places (file:line), as
fairseq and JoeyNMT filter their corpora; `strict` refuses the file at the first one instead.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

from scratchlm.errors import UserError

NOT_IN_CP1252 = (0x81, 0x8D, 0x8F, 0x90, 0x9D)
# C1 control -> the Windows-1252 character of the same byte
CP1252_OF_C1 = str.maketrans({chr(b): bytes([b]).decode("cp1252") for b in range(0x80, 0xA0) if b not in NOT_IN_CP1252})
MOJIBAKE = re.compile("[\x80-\x9f]")
# Control characters (Unicode category Cc) but the tab and the line end: never part of a sentence
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
SHOWN_PLACES = 3  # places named in the warning


def repair_mojibake(text: str) -> str:
    """`text` with every C1 control that Windows-1252 defines replaced by that character (see above)."""
    return text.translate(CP1252_OF_C1)


def control_character(text: str) -> str | None:
    """The first control character of `text` that a sentence never holds (a NUL, U+0001, ...), or None."""
    match = CONTROL.search(text)
    return match[0] if match else None


def describe_character(char: str) -> str:
    return "a NUL byte" if char == "\x00" else f"the control character U+{ord(char):04X}"


@dataclass
class Screen:
    """Screens the lines of one data set: repairs mojibake, leaves out unusable examples (or refuses them when
    `strict`), and counts both for the run's config.json."""

    repair: bool = True  # C1 controls become Windows-1252's characters
    strict: bool = False  # the first unusable line refuses the whole file
    repaired: int = 0  # lines repaired
    skipped: list[str] = field(default_factory=list)  # "file:line: why", one per example left out

    def line(self, text: str, place: str) -> str | None:
        """`text` repaired, or None (with the place recorded) when it cannot be used."""
        if self.repair and MOJIBAKE.search(text):
            text = repair_mojibake(text)
            self.repaired += 1
        if bad := control_character(text):
            self.reject(place, f"holds {describe_character(bad)}")
            return None
        return text

    def reject(self, place: str, why: str) -> None:
        """An example that cannot be used: left out, or (strict) the reason the file is refused."""
        if self.strict:
            raise UserError(f"{place}: {why} (without --strict, such lines are left out with a warning)")
        self.skipped.append(f"{place}: {why}")

    def warn(self, what: str) -> None:
        """One line for the repaired lines and one for the `what`s (pairs, examples) left out, if any."""
        warn_repaired(self.repaired)
        if self.skipped:
            shown = "; ".join(self.skipped[:SHOWN_PLACES]) + (" ..." if len(self.skipped) > SHOWN_PLACES else "")
            warnings.warn(f"{len(self.skipped):,} {what}(s) left out, unusable: {shown} (--strict refuses them)",
                          stacklevel=2)

    def summary(self) -> dict[str, int]:
        """For config.json's data summary."""
        return {"lines_repaired": self.repaired, "skipped": len(self.skipped)}


def warn_repaired(lines: int) -> None:
    if lines:
        warnings.warn(f"{lines:,} line(s) held Windows-1252 characters decoded as latin-1 (C1 controls, mojibake); "
                      "repaired", stacklevel=3)
