"""URLconf of the in-process tests: the app mounted at /modelriver/."""

from django.urls import include, path

urlpatterns = [path("modelriver/", include("django_modelriver.urls"))]
