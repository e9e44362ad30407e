from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("dashboards", "0002_rollup_unique_bucket"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="rollup",
            options={
                "ordering": ["metric", "day"],
                "permissions": [("view_sla_dashboard", "Can see the SLA dashboard and the orders behind its figures")],
            },
        ),
    ]
