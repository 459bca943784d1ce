"""Storage: how every saved result reaches the disk and comes back.

Confined file primitives (:mod:`.files`: no symlinks, bounded reads, atomic single-file writes, locks), writing a
versioned result directory whose ``manifest.json`` switches atomically and replacing only what is ours
(:mod:`.write`), and checksummed, memory-mapped loads that open only the files a format names (:mod:`.read`).
Results and lenses call these; nothing here knows what a scan or a map is.
"""

from .files import PART_RE, RUN_RE, part_dir_name, read_json, run_dir_name, write_text_atomic
from .read import LoadedResult, load_dir, load_result
from .write import (PAGE_KIND, TENSORS, ResultWriter, check_format, check_save_target, claim_dir, interprocess_lock,
                    marker, page_marker, save_dir, save_text, write_file_atomic)

__all__ = ["PART_RE", "RUN_RE", "part_dir_name", "run_dir_name", "read_json", "write_text_atomic", "LoadedResult",
           "load_dir", "load_result", "PAGE_KIND", "TENSORS", "ResultWriter", "check_format", "check_save_target",
           "claim_dir", "interprocess_lock", "marker", "page_marker", "save_dir", "save_text", "write_file_atomic"]
