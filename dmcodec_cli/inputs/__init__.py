"""Audio inputs, one way for every command (encode, prep, roundtrip, score, extract):

* ``walk``: the one folder walk (hidden names skipped, links followed once, in id order);
* ``ids``: the one id rule (path relative to the root, less the extension) and its flat form for file names;
* ``manifest``: the one reader of audio-list manifests (``.txt`` / ``.list``, ``.tsv`` / ``.csv``, JSONL,
  lhotse), ``collect``: a folder, a manifest or one file as items;
* ``transcripts``: the one reader of transcripts files and the one way a name finds its text.

It sits low in the package: it imports only ``audio`` and ``errors``.
"""

from .collect import collect_inputs, read_folder, read_inputs, with_folder_labels
from .ids import audio_id, flat_id, relative_id
from .items import Item
from .manifest import MANIFEST_EXTENSIONS, is_manifest, read_manifest
from .transcripts import read_transcripts, transcript_for
from .walk import Found, audio_files, parse_extensions

__all__ = ["MANIFEST_EXTENSIONS", "Found", "Item", "audio_files", "audio_id", "collect_inputs", "flat_id",
           "is_manifest", "parse_extensions", "read_folder", "read_inputs", "read_manifest", "read_transcripts",
           "relative_id", "transcript_for", "with_folder_labels"]
