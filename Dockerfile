# harvest: the same steps as the README's set-up (venv + pip install -e .), in an image.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY harvester ./harvester
COPY queries ./queries
# EXTRAS=ray (docker-compose's `ray` profile) installs harvest[ray] for a Ray head and workers.
ARG EXTRAS=""
RUN python3 -m venv /app/.venv && /app/.venv/bin/pip install -q -e ".${EXTRAS:+[$EXTRAS]}"
ENV PATH="/app/.venv/bin:${PATH}"
ENTRYPOINT ["harvest"]
CMD ["--help"]
