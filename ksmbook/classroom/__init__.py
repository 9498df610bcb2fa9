"""Teaching with the book: nbgrader assignments made from the exercise generators.

    python -m ksmbook classroom assignment --chapter 2 --course course/ [--variants]

Grading happens in nbgrader's process, never in the student's kernel: the assignment's cells
only record each answer (`record_answer`), and ksmbook's autograde step
(`ksmbook.classroom.grading`, registered in the course's nbgrader_config.py) grades it.
The class hub's configuration is ``classroom/jupyterhub_config.py`` in the repository.
"""

from .assignment import (
    AssignmentError,
    assignment_notebook,
    solution_lines,
    write_assignment,
)
from .student import record_answer, show_problem

__all__ = ["AssignmentError", "assignment_notebook", "record_answer", "show_problem",
           "solution_lines", "write_assignment"]
