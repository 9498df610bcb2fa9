# nbgrader on the teacher's server of the class hub (classroom/jupyterhub_config.py puts this
# folder on JUPYTER_CONFIG_PATH for the teacher's account only): the course folder
# ~/KSMBOOK_COURSE, the same course id and exchange as the students', formgrader, and a
# collect that files a submission only under the name of the OS user who made it.
import os

c = get_config()  # noqa: F821
COURSE = os.environ.get("KSMBOOK_COURSE", "ksmbook-course")
c.CourseDirectory.course_id = COURSE
c.CourseDirectory.root = os.path.join(os.path.expanduser("~"), COURSE)
c.Exchange.root = os.environ.get("KSMBOOK_EXCHANGE", "/srv/nbgrader/exchange")
c.ExchangeFactory.collect = "ksmbook.classroom.exchange.ExchangeCollect"
# KSMBOOK_CHECK_OWNER=0 only where every student runs as one OS user (test mode, not root).
c.ExchangeCollect.check_owner = os.environ.get("KSMBOOK_CHECK_OWNER", "1") != "0"
# On Kubernetes each student's pod writes only inbound/NAME/ (classroom/kubernetes/values.yaml).
c.ExchangeCollect.per_student_inbound = os.environ.get("KSMBOOK_PER_STUDENT_INBOUND") == "1"
