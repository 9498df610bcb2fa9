"""Teaching with the book: nbgrader assignments made from the exercise generators.

    python -m ksmbook classroom assignment --chapter 2 --course course/

The class hub's configuration is ``classroom/jupyterhub_config.py`` in the repository.
"""

from .assignment import (
    AssignmentError,
    ProblemRef,
    assignment_notebook,
    grade_answer,
    write_assignment,
)

__all__ = ["AssignmentError", "ProblemRef", "assignment_notebook", "grade_answer",
           "write_assignment"]
