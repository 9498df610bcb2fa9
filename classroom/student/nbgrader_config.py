# nbgrader on a student's server of the class hub (classroom/jupyterhub_config.py puts this
# folder on JUPYTER_CONFIG_PATH): the course and the exchange that assignments come from.
# Beside it, jupyter_server_config.json and labconfig/page_config.json leave students the
# Assignments tab and Validate, without the teacher's formgrader and assignment creator.
import os

c = get_config()  # noqa: F821
c.CourseDirectory.course_id = os.environ.get("KSMBOOK_COURSE", "ksmbook")
c.Exchange.root = os.environ.get("KSMBOOK_EXCHANGE", "/srv/nbgrader/exchange")
