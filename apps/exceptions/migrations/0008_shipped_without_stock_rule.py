from django.db import migrations


def create_builtin_rules(apps, schema_editor):
    from apps.exceptions.services import builtin_rules_ensure

    builtin_rules_ensure(apps.get_model("exceptions", "ExceptionRule"))


class Migration(migrations.Migration):
    dependencies = [("exceptions", "0007_stock_subjects")]

    operations = [migrations.RunPython(create_builtin_rules, migrations.RunPython.noop)]
