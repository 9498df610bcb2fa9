# The class hub's image on Kubernetes: the chart's own hub image (its JupyterHub and Native
# Authenticator, the versions the chart was released with) plus ksmbook, for the class hub's
# authenticator (ksmbook.classroom.hubserver.ClassAuthenticator) and the teacher's account
# (python -m ksmbook classroom hub-admin, run by the hub pod's init container).
#   docker build -f classroom/kubernetes/hub.Dockerfile -t registry.example.org/ksmbook-hub:0.1.0 .
# The tag of FROM is the chart's version (values.yaml, README.md): change them together.
FROM quay.io/jupyterhub/k8s-hub:4.4.0
USER root
COPY --chown=root:root pyproject.toml README.md /srv/ksmbook/
COPY --chown=root:root ksmbook /srv/ksmbook/ksmbook
RUN pip install --no-cache-dir /srv/ksmbook
USER 1000
