"""The app config: registers the system checks and the settings-reset receiver; tunes Daphne."""

from __future__ import annotations

from django.apps import AppConfig


class DjangoModelRiverConfig(AppConfig):
    name = "django_modelriver"
    label = "django_modelriver"
    verbose_name = "ModelRiver"

    def ready(self) -> None:
        from django_modelriver import checks, conf, serving  # noqa: F401  (registration side effects)

        if conf.modelriver_settings().tune_daphne:
            from django_modelriver._daphne import tune

            tune()
