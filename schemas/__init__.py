"""marshmallow schemas: the job envelope, one module per provider's create-order body, shared field types."""
