"""The built-in corpus: the numbers 1 to 9,999 written in English words.

This is the "human numbers" data set of fast.ai's chapter 12, "A language model from scratch": small
enough to train on a laptop in seconds, structured enough that a model must learn real patterns
("... ninety nine . two hundred ...") to predict the next word. Generated here, never downloaded.
"""

ONES = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEENS = ["ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen"]
TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]

NAME = "human-numbers"


def number_to_words(n: int) -> str:
    """1 <= n <= 9999 in words, the book's way: 'nine thousand nine hundred ninety nine'."""
    if not 1 <= n <= 9999:
        raise ValueError(f"number_to_words takes 1..9999, got {n}")
    words = []
    thousands, rest = divmod(n, 1000)
    hundreds, rest = divmod(rest, 100)
    if thousands:
        words += [ONES[thousands - 1], "thousand"]
    if hundreds:
        words += [ONES[hundreds - 1], "hundred"]
    if rest >= 20:
        tens, ones = divmod(rest, 10)
        words.append(TENS[tens - 2])
        if ones:
            words.append(ONES[ones - 1])
    elif rest >= 10:
        words.append(TEENS[rest - 10])
    elif rest:
        words.append(ONES[rest - 1])
    return " ".join(words)


def human_numbers_text(last: int = 9999) -> str:
    """'one . two . three . ... . nine thousand nine hundred ninety nine', as the book joins them."""
    return " . ".join(number_to_words(n) for n in range(1, last + 1))
