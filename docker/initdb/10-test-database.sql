-- The test suite uses a database named "test" (tests/conftest.py); create it beside "treasury".
CREATE DATABASE test;
