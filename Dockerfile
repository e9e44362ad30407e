FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY controltower ./controltower
COPY apps ./apps
RUN pip install .
COPY . .
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput

EXPOSE 8000
# gunicorn with uvicorn worker processes, HTTP and websockets (gunicorn.conf.py; WEB_CONCURRENCY).
CMD ["gunicorn", "--config", "gunicorn.conf.py"]
