"""The numeric scorer on hand-written replies, each with the verdict a person reading it would give.

Each row is (reply, reference, right, cut_off): `right` says whether the reply answers `reference`.
The replies are written by hand in many styles (terse, chatty, markdown, LaTeX, GSM8K, corrected,
cut off), not taken from any one model. Grouped by the rule they exercise; every group has replies
that must fail as well as pass, so a rule that reads the wrong number is caught either way.
"""

from __future__ import annotations

import time

import pytest

from services.evaluation import scoring

EXPLICIT = [
    # \boxed{} and #### beat every other number
    ("We add 7 and 5 to get 12, so the final count is \\boxed{12}. Check: 12 - 5 = 7.", "12", True),
    ("\\boxed{\\frac{1}{4}} of the cake is left, i.e. 2 of 8 slices.", "0.25", True),
    ("Total: 3 + 4 = 7 hours\n#### 7", "7", True),
    ("Each bag holds 6, four bags hold 24.\n#### 24\nThat is 4 x 6.", "24", True),
    ("#### 30\nHe reads 10 pages a day for 3 days.", "30", True),
    ("\\boxed{15} is what I get, though 16 looked tempting.", "16", False),
    # "the answer is" / "answer:" / "final answer" beat the last number
    ("The answer is 45. It took 3 steps and 2 checks.", "45", True),
    ("Answer: 8\n\nExplanation: 2 boxes of 4 pencils, so 2 x 4 = 8; the 3 pens are not counted.", "8", True),
    ("Final answer: $1,250 (before the 15% tip)", "1250", True),
    ("final answer = 64, computed as 8 squared over 2 days", "64", True),
    ("I believe the answer would be 17 apples after 3 are eaten.", "17", True),
    ("**Answer:** 96 km\n\nSpeed 48 km/h for 2 hours.", "96", True),
    ("The correct answer is 0.5 litres; 2 cups of 250 ml each make 500 ml.", "0.5", True),
    ("The answer is 5. The other 4 options are distractors.", "4", False),
    ("My answer: 210 minutes, i.e. 3.5 hours.", "210", True),
    ("The answer was 9 when I first tried, but recounting the 11 chairs...", "9", True),
    # "X is the answer": the answer first, then working
    ("12 is the answer because 12 x 2 = 24.", "12", True),
    ("36 is my final answer, since 6 rows of 6 make 36 and 2 seats are broken but still counted.", "36", True),
    ("150 is the correct answer: 3 shelves x 50 books = 150, not 120.", "150", True),
    ("18 pencils is the answer, because 3 packs of 6 are 18 and she gave 5 away later.", "18", True),
    ("7 is the answer because 21 / 3 = 7 and 7 + 0 = 7.", "21", False),
    # "=>" and a bolded final number
    ("3 packs x 8 = 24 => 24", "24", True),
    ("price 40, discount 25% => 30 dollars, plus a 2 dollar fee later", "30", True),
    ("She walks 2 km twice a day for 7 days => 28 km in the week", "28", True),
    ("Step 1: 9 x 3 = 27 kids.\nStep 2: add 4 teachers.\nSo **31** people ride, 2 of them drivers.", "31", True),
    ("**Step 1:** 5 + 5 = 10\n**Step 2:** 10 x 3 = **30**\nThe other 2 values are unused.", "30", True),
    ("The farmer has **84** eggs, but 6 crack the next day.", "84", True),
    ("**Total: $56**, with 3 items still to ship", "56", True),
    ("So **19** people came, 4 fewer than planned.", "23", False),
]

EXPRESSIONS = [
    # an expression after "is" takes its result
    ("The answer is 14 x 2 = 28.", "28", True),
    ("The answer is 14 x 2 = 28.", "14", False),
    ("Answer: 120 / 4 = 30 minutes each", "30", True),
    ("The answer is 3 + 4 + 5 = 12 marbles.", "12", True),
    ("the answer is 7 * 8 = 56", "56", True),
    ("The final answer is $15 x 3 = $45.", "45", True),
    ("Answer: 100 - 35 = 65 pages left", "65", True),
    ("The answer is 9 \u00d7 9 = 81 tiles, laid in 9 rows.", "81", True),
    ("The answer is 2.5 x 4 = 10 kg", "10", True),
    ("The answer is (6 + 4) x 3 = 30 chairs.", "30", True),
    ("The answer is 50 divided by 2 = 25", "25", True),
    ("=> 12 + 6 = 18 cookies", "18", True),
    ("The answer is 14 x 2 = 29.", "28", False),
]

NEGATION = [
    ("not 12; it is 19", "19", True),
    ("not 12; it is 19", "12", False),
    ("The answer is not 12; it is 19.", "19", True),
    ("It's 19, not 12.", "19", True),
    ("It's 19, not 12.", "12", False),
    ("The answer isn't 40, it's 45.", "45", True),
    ("12 is wrong; recounting gives 15.", "15", True),
    ("She has 31 stickers rather than 30.", "31", True),
    ("You might think 8, but the real total is 10.", "10", True),
    ("The bus holds 52 people, not 48 as the sign says.", "52", True),
    ("The answer is never 0 here; it is 6.", "6", True),
    ("I first got 22, which was incorrect. The answer is 24.", "24", True),
    ("The answer is 72 instead of 70.", "72", True),
    ("Not 3 hours but 4 hours.", "4", True),
]

DETAILS = [
    # a detail after the answer does not replace it
    ("12 dollars, after the $5 coupon", "12", True),
    ("12 dollars, after the $5 coupon", "5", False),
    ("$38, including the 6 dollar delivery fee", "38", True),
    ("It's 42 litres, with 8 more needed for a full tank.", "42", True),
    ("She pays 27 dollars, after the 10% discount.", "27", True),
    ("So he has 64 marbles left, since he started with 80 and lost 16.", "64", True),
    ("The trip takes 5 hours (with a 30 minute stop).", "5", True),
    ("The total is 28 (14 x 2).", "28", True),
    ("That makes 11 cupcakes, not counting the 2 she ate.", "11", True),
    ("They need 9 buses, at 40 students per bus.", "9", True),
    ("So the garden is 60 square metres, based on 10 by 6.", "60", True),
    ("She ends up with 19 apples in total: 12 from Monday and 7 from Tuesday.", "19", True),
    ("He spent $15, which is 3 items at 5 dollars.", "15", True),
    ("She had 20 apples; after giving away 8 she has 12.", "12", True),  # not a detail: a new result
    ("He earns 300 a week, so after 4 weeks he has 1200.", "1200", True),
    ("The tank holds 50 litres, after which it overflows by 5.", "5", False),
]

ANSWER_FIRST = [
    ("12. Because 3 boxes of 4 make 12, and 12 x 2 would be 24.", "12", True),
    ("45 minutes, because the 3 stops take 15 minutes each.", "45", True),
    ("It's 90, since 9 x 10 = 90 and the 2 spares are extra.", "90", True),
    ("24 cookies - here's how: 4 trays of 6, and 3 were burnt but still counted.", "24", True),
    ("8\nExplanation: 32 / 4 = 8, plus the 1 she had doesn't apply.", "8", True),
    ("That is 7 days, as 49 / 7 = 7 with 0 left.", "7", True),
    ("$16, because 2 tickets at $8 each.", "16", True),
    ("150 km. First 90 km, then 60 km.", "150", True),
    ("3 apples. Then she buys 4 more, so 7.", "7", True),
    ("The total number of marbles is 45.\n\nStep-by-step:\n1. 20 red\n2. 25 blue", "45", True),
    ("She needs 14 tiles.\n\n**Explanation:** 2 rows of 7 tiles, and the 3 spare tiles are not needed.", "14", True),
    (
        "Lisa has 15 stickers. First she gives 4 away, then 3 more, so 8 are left.",
        "8",
        True,
    ),  # not answer-first: the working goes on to a result
    ("20, because 4 x 5 = 20.", "25", False),
]

LAST_NUMBER = [
    # no explicit answer: the last number that is not negated, bracketed or a trailing detail
    ("42", "42", True),
    ("Tom had 5 and bought 7, so he has 12.", "12", True),
    ("First 12, then 7, so finally 19", "19", True),
    ("6 x 7 = 42", "42", True),
    ("She bakes 3 trays of 12 cookies, which gives 36.", "36", True),
    ("The price went from $80 to $60.", "60", True),
    ("It fell to -17 degrees", "-17", True),
    ("about 3.25 kg", "3.25", True),
    ("Three quarters is 3/4", "0.75", True),
    ("1,234 people attended.", "1234", True),
    ("That's roughly 1.5e3 metres.", "1500", True),
    ("After the sale, 48 remain out of 60.", "48", False),  # the last number is 60: a person would not count this
    ("I am not sure how many there are.", "5", False),
    ("He gave 8 away, so he has 14 - 8 = 6 left.", "6", True),
    ("They travelled 120 km on day 1 and 80 km on day 2, 200 km in all.", "200", True),
    ("Each of the 4 friends gets 2.5 slices.", "2.5", True),
    ("The temperature rose from -3 to 4.", "4", True),
    ("Total cost: 3 x $4.50 = $13.50", "13.5", True),
    ("It costs $12.50 in all.", "12.5", True),
    ("-$4.75 after fees", "-4.75", True),
]

CORRECTIONS = [
    ("The answer is 12. Wait, actually it is 19.", "19", True),
    ("The answer is 12. Wait, actually it is 19.", "12", False),
    ("#### 40\nOops, I made a mistake: 5 x 9 = 45.", "45", True),
    ("Answer: 30. Sorry, I misread the question - it is 33.", "33", True),
    ("The answer is 18. Let me verify: 18 / 3 = 6, which matches.", "18", True),  # a check is no correction
    ("The answer is 25. Actually, yes, 25 is right.", "25", True),
]

CUT_OFF = [
    # a reply stopped by max_tokens counts only with an explicit answer stated before the cut
    ("The shirt costs $40 and has a 25% off rate, so", "25", False, True),
    ("The shirt costs $40 and has a 25% off rate, so", "30", False, True),
    ("The answer is 30. To see why: $40 minus 25% of", "30", True, True),
    ("#### 30\nBecause 40 x 0.75 = 30 and then we", "30", True, True),
    ("Step 1: 12 + 7 = 19\nStep 2: 19 x 2 =", "19", False, True),
    ("\\boxed{38}\n\nHere is the working: first the 3", "38", True, True),
    ("So far 3 + 4 = 7, and the answer is 1", "15", False, True),  # the number may be the start of 15
    ("Adding the two crates, the answer is 1", "1", False, True),  # it may have gone on to 15: not credited
    ("12 is the answer, because 6 + 6 = 12, and", "12", True, True),
    ("The train leaves at 9 and arrives at 11, a", "2", False, True),
    ("The answer is **56**. Working: 7 rows of 8 seats and", "56", True, True),
    ("Final answer: 3. Let me double-check the", "3", True, True),
    ("Final answer: 3. Let me double-check the", "3", True, False),  # the same reply, not cut off
    ("The shirt costs $40 and has a 25% off rate, so", "25", True, False),  # uncut, its last number is read
]

WRONG_BY_THE_LAST_NUMBER = [
    # wrong answers whose last number happens to be the reference: only an explicit reading fails them
    ("The answer is 24. Check: 24 / 2 = 12.", "12", False),
    ("\\boxed{7}, since 3 + 4 = 7 and 7 + 5 = 12", "12", False),
    ("19 is the answer; 12 + 7 = 19, not 12.", "12", False),
    ("The answer is 28 (14 x 2).", "2", False),
    ("Answer: 9. Because 9 + 1 = 10.", "10", False),
    ("She ends up with 19 apples in total: 12 from Monday and 7 from Tuesday.", "7", False),
    ("The answer is **8**; 2 x 4 = 8 and 8 + 3 = 11", "11", False),
    ("45 is the answer because 5 x 9 = 45, and 45 + 5 = 50.", "50", False),
    ("#### 64\nThe 8 rows have 8 seats, 2 of which are broken.", "2", False),
    ("It's 33 dollars, after the 3 dollar voucher.", "3", False),
]

GROUPS = (EXPLICIT, EXPRESSIONS, NEGATION, DETAILS, ANSWER_FIRST, LAST_NUMBER, CORRECTIONS, WRONG_BY_THE_LAST_NUMBER)
TABLE = [(*row, False) for group in GROUPS for row in group]
TABLE += CUT_OFF


def test_the_table_is_large_and_has_both_verdicts():
    assert len(TABLE) >= 100
    assert sum(row[2] for row in TABLE) > 20 and sum(not row[2] for row in TABLE) > 20


@pytest.mark.parametrize(("reply", "reference", "right", "cut_off"), TABLE)
def test_a_reply_is_scored_as_a_person_reads_it(reply, reference, right, cut_off):
    verdict = scoring.numeric(reply, reference, cut_off=cut_off)
    assert verdict.passed == right, verdict.why


def test_a_cut_off_reply_says_why_it_failed():
    verdict = scoring.numeric("The shirt costs $40 and has a 25% off rate, so", "25", cut_off=True)
    assert verdict == scoring.Score(0.0, "cut off at max_tokens before an explicit answer (its last number was 25)")
    kept = scoring.numeric("The answer is 30. To see why: $40 minus 25% of", "30", cut_off=True)
    assert kept.passed and "cut off at max_tokens after it" in kept.why


def test_the_verdict_names_the_rule_that_found_the_answer():
    stated = scoring.numeric("12 is the answer because 12 x 2 = 24", "12")
    assert stated.why == "expected 12, got 12 (the stated answer)"
    assert scoring.numeric("x => 12", "12").why == "expected 12, got 12 (after =>)"
    assert scoring.numeric("So 5 + 7 = 12", "12").why == "expected 12, got 12"  # the last number: no note


@pytest.mark.parametrize(
    ("reply", "answer", "cut_off"),
    [
        ("12 is the answer because 12 x 2 = 24", "12", False),
        ("The answer is 14 x 2 = 28.", "28", False),
        ("not 12; it is 19", "19", False),
        ("12 dollars, after the $5 coupon", "12", False),
        ("So the colour is **Blue**.", "blue", False),
        ("The answer is Blue.", "blue", False),
        ("a 25% off rate, so", None, True),
        ("The answer is 30. To see why: $40 minus 25% of", "30", True),
        ("The answer is Lisbon. It is the capital of", "lisbon", True),
    ],
)
def test_extract_answer_reads_numbers_the_same_way(reply, answer, cut_off):
    assert scoring.extract_answer(reply, cut_off=cut_off) == answer


@pytest.mark.parametrize(
    "reply",
    [
        "12" + "a" * 5000,  # a word after a number that backtracking regexes split every way
        "answer: " * 5000,  # thousands of markers with no number
        " ".join(str(i) for i in range(20000)),  # one sentence of numbers
        "1, with " * 5000 + "2",  # a detail after every number
        "not " * 5000 + "12",
    ],
)
def test_a_reply_built_to_be_slow_is_read_quickly(reply):
    started = time.perf_counter()
    scoring.numeric(reply, "12")
    scoring.extract_answer(reply)
    assert time.perf_counter() - started < 10  # about 1 s on a busy 2-core machine; minutes without the bounds
