"""Storage: how every saved result reaches the disk and comes back.

Confined file primitives (:mod:`.files`: no symlinks, bounded reads, atomic single-file writes, locks), writing a
versioned result directory whose ``manifest.json`` switches atomically and replacing only what is ours
(:mod:`.write`), checksummed, memory-mapped loads that open only the files a format names (:mod:`.read`), and the
seals and bindings that tie each file to its content and its result (:mod:`.integrity`).
Results and lenses call these; nothing here knows what a scan or a map is.
"""

from .files import PART_RE, RUN_RE, part_dir_name, part_index, read_json, run_dir_name, write_error, write_text_atomic
from .read import LoadedResult, load_dir, load_result
from .write import (PAGE_KIND, TENSORS, ResultWriter, check_format, check_save_target, claim_dir, interprocess_lock,
                    marker, page_marker, save_dir, save_text, write_file_atomic)

__all__ = ["PART_RE", "RUN_RE", "part_dir_name", "part_index", "run_dir_name", "write_error", "read_json",
           "write_text_atomic", "LoadedResult", "load_dir", "load_result", "PAGE_KIND", "TENSORS", "ResultWriter",
           "check_format", "check_save_target", "claim_dir", "interprocess_lock", "marker", "page_marker", "save_dir",
           "save_text", "write_file_atomic"]
