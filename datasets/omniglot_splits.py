"""Class splits of Omniglot, written as rules over alphabets and characters.

Both rules act on the 1623 characters of the two official subsets taken together; a character is
named ``"Alphabet/characterNN"`` as in the official folder layout.
"""

from __future__ import annotations

VINYALS_VAL_ALPHABETS = frozenset(
    {"Hebrew", "Mkhedruli_(Georgian)", "Armenian", "Early_Aramaic", "Bengali"}
)
VINYALS_TEST_ALPHABETS = frozenset(
    {
        "Kannada",
        "Keble",
        "Malayalam",
        "Manipuri",
        "Mongolian",
        "Old_Church_Slavonic_(Cyrillic)",
        "Oriya",
        "Syriac_(Serto)",
        "Sylheti",
        "Tengwar",
        "Tibetan",
        "ULOG",
    }
)
#: Gurmukhi is split inside the alphabet: these characters are test classes, the rest train.
VINYALS_TEST_GURMUKHI_CHARACTERS = frozenset({42, 43, 44, 45})
VINYALS_ROTATIONS = (0, 1, 2, 3)  # quarter turns: 0, 90, 180, 270 degrees
VINYALS_SPLITS = ("train", "val", "test", "trainval")
#: Lake et al.'s background set trains; five of its alphabets (Vinyals et al.'s validation
#: alphabets, all background ones) are held out for validation; the evaluation set tests.
LAKE_VAL_ALPHABETS = VINYALS_VAL_ALPHABETS
LAKE_SPLITS = ("train", "val", "test", "trainval")
#: ``lake-rotated``: Lake et al.'s split with the training characters (``train``, ``trainval``)
#: also at 90, 180 and 270 degrees, each rotation its own class (the augmentation of the
#: published Omniglot recipes); validation and test characters stay upright, as in Lake's runs.
SCHEMES = {"vinyals": VINYALS_SPLITS, "lake": LAKE_SPLITS, "lake-rotated": LAKE_SPLITS}
LAKE_SCHEMES = ("lake", "lake-rotated")


def vinyals_split_of(character: str) -> str:
    """``"train"``, ``"val"`` or ``"test"``: where Vinyals et al. (2016) put ``character``.

    Args:
        character: ``"Alphabet/characterNN"``.
    """
    alphabet, _, folder = character.partition("/")
    if alphabet in VINYALS_TEST_ALPHABETS:
        return "test"
    if alphabet == "Gurmukhi" and int(folder.removeprefix("character")) in (
        VINYALS_TEST_GURMUKHI_CHARACTERS
    ):
        return "test"
    if alphabet in VINYALS_VAL_ALPHABETS:
        return "val"
    return "train"


def in_split(scheme: str, split: str, character: str, subset: str) -> bool:
    """Whether ``character`` (from official ``subset``) belongs to ``split`` of ``scheme``.

    Args:
        scheme: ``"vinyals"``, ``"lake"`` or ``"lake-rotated"``.
        split: one of ``SCHEMES[scheme]``.
        character: ``"Alphabet/characterNN"``.
        subset: ``"images_background"`` or ``"images_evaluation"``.
    """
    check_split(scheme, split)
    if scheme in LAKE_SCHEMES:
        if subset != "images_background":
            return split == "test"
        held_out = character.partition("/")[0] in LAKE_VAL_ALPHABETS
        return split == "trainval" or split == ("val" if held_out else "train")
    where = vinyals_split_of(character)
    return where == split or (split == "trainval" and where in ("train", "val"))


def rotations_of(scheme: str, split: str) -> tuple[int, ...]:
    """Quarter turns that make separate classes in ``split`` under ``scheme``."""
    if scheme == "vinyals" or (scheme == "lake-rotated" and split in ("train", "trainval")):
        return VINYALS_ROTATIONS
    return (0,)


def check_split(scheme: str, split: str) -> None:
    """Raise a ValueError naming the valid choices when ``scheme``/``split`` is unknown."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown Omniglot split scheme {scheme!r}; valid: {', '.join(SCHEMES)}")
    if split not in SCHEMES[scheme]:
        raise ValueError(
            f"unknown split {split!r} for Omniglot scheme {scheme!r}; "
            f"valid: {', '.join(SCHEMES[scheme])}"
        )
