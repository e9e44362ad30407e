"""The queue's search box finds words of a case's summary through a trigram index (PostgreSQL)."""

from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations

import apps.exceptions.models


class Migration(migrations.Migration):
    dependencies = [
        ("exceptions", "0005_open_case_indexes"),
    ]

    operations = [
        TrigramExtension(),
        migrations.AddIndex(
            model_name="exceptioncase",
            index=apps.exceptions.models.TrigramIndex(fields=["summary"], name="case_summary_trigram"),
        ),
    ]
