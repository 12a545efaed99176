# An image of Conveyor with its Redis driver and the admin, and this repository's
# examples (compose.yaml runs them). For your app: FROM this, or pip install
# 'conveyor-jobs[redis,admin,metrics]' in your own image, and COPY your code.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md LICENSE CHANGELOG.md ./
COPY conveyor ./conveyor
RUN pip install --no-cache-dir '.[redis,admin,metrics]'
COPY examples ./examples
# Runs as a user without privileges; SIGTERM stops a worker gracefully.
RUN useradd --create-home conveyor
USER conveyor
ENV PYTHONUNBUFFERED=1
CMD ["conveyor", "--help"]
