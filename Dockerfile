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
CMD ["daphne", "--bind", "0.0.0.0", "--port", "8000", "controltower.asgi:application"]
