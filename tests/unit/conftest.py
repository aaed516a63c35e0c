import pytest

from app.factory import create_app


@pytest.fixture(scope="module")
def app(model_dir):
    """The instrumented app on a freshly trained model, in-process."""
    return create_app(model_dir=model_dir, instrumented=True)


@pytest.fixture()
def client(app):
    return app.test_client()
