# Image for Kubeflow Pipelines / Vertex AI runs of the suite's pipelines
# (`sensor-vibration compile --target kubeflow-v2 --image IMAGE`).
FROM python:3.10-slim
ENV TF_USE_LEGACY_KERAS=0 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    UV_PYTHON_DOWNLOADS=never \
    PYTHONUNBUFFERED=1
RUN pip install --no-cache-dir uv
WORKDIR /suite
COPY pyproject.toml uv.lock README.md ./
COPY suite suite
COPY blocks blocks
COPY apps apps
COPY components components
COPY pipelines pipelines
COPY serving serving
# Install the locked stack and the suite itself into the image's Python (no venv):
# the Kubeflow V2 executor entry point runs `python -m tfx.orchestration.kubeflow.v2...`.
RUN uv export --frozen --no-dev --no-emit-project -o /tmp/requirements.txt \
    && uv pip install --system --no-cache -r /tmp/requirements.txt \
    && uv pip install --system --no-cache --no-deps .
