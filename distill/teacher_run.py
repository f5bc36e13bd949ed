"""The files of a teacher run folder, which the student v2 reads (`student_v2.TeacherV2.load`).

Written by the teacher v2 on a GPU (`teacher_v2.write_outputs`) and by the probe teacher on the
CPU (`probe_teacher`): the row keys, the class logits per row, the transferred patch scores of
the rows with words and a photo, the word scores (the teacher v2 only) and, with the probe
teacher's `--patch-targets`, each labelled photo's targets read alone.
"""

KEYS = "keys.json"
LOGITS = "outputs-logits.npz"
PATCHES = "outputs-patches.npz"
TOKENS = "outputs-tokens.npz"
PHOTO_PATCHES = "outputs-photo-patches.npz"

__all__ = ["KEYS", "LOGITS", "PATCHES", "PHOTO_PATCHES", "TOKENS"]
