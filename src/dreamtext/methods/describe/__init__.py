"""Sentence selection (thesis 5.2.1): `dreamtext describe` picks the words CLIP finds true of an image.

vocabulary.py  shipped word lists (general English, the built-in world's words)
selection.py   the greedy search: noun first, then descriptor words while the similarity rises
describe.py    the command: prepare the input image, select, write DIR/describe.json
"""

from .describe import DESCRIBE_FILE, DescribeConfig, describe_image
from .selection import Selection, SelectionStep, SentenceConfig, select_sentence
from .vocabulary import Vocabulary, load_vocabulary

__all__ = [
    "DESCRIBE_FILE", "DescribeConfig", "Selection", "SelectionStep", "SentenceConfig", "Vocabulary",
    "describe_image", "load_vocabulary", "select_sentence",
]
