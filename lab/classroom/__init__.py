"""A class: a lab per student (lab.classroom.room and its helpers).

The class commands' defaults live here so that `reglab --help` and every
other command can show them without loading the class's code.
"""

JOBS = 4  # labs booted at once: each boot is mostly waiting, but 2 cores share every provision
CHECK_TIMEOUT = 60  # seconds one lab's grading may take before its row says it did not answer
