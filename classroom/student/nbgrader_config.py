# nbgrader on a student's server of the class hub (classroom/jupyterhub_config.py puts this
# folder on JUPYTER_CONFIG_PATH): the course and the exchange that assignments come from.
# Beside it, jupyter_server_config.json and labconfig/page_config.json leave students the
# Assignments tab and Validate, without the teacher's formgrader and assignment creator.
# Nothing here is a safeguard (a student can override any of it): the exchange's permissions
# and the teacher's collect (ksmbook.classroom.exchange) are.
import os

c = get_config()  # noqa: F821
c.CourseDirectory.course_id = os.environ.get("KSMBOOK_COURSE", "ksmbook-course")
c.Exchange.root = os.environ.get("KSMBOOK_EXCHANGE", "/srv/nbgrader/exchange")
# Submissions are filed under the student's hub name (as root the hub runs each student as
# the OS user of that name, which is what nbgrader would use anyway).
if os.environ.get("JUPYTERHUB_USER"):
    c.CourseDirectory.student_id = os.environ["JUPYTERHUB_USER"]
