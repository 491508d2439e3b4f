//! Typed calls for the mesh's vector collections (PROTOCOL.md §20).

use super::{ClientError, MeshClient, unexpected};
use crate::protocol::messages::{
    CollectionEntry, VectorCreate, VectorResult, VectorSearch, VectorStore,
};
use crate::protocol::{ClientMessage, ServerMessage};

impl MeshClient {
    /// Creates a collection (`metric`: cosine, dot or euclid; cosine when `None`), or finds
    /// the same one.
    pub async fn vector_create(
        &self,
        collection: &str,
        dimension: usize,
        metric: Option<&str>,
    ) -> Result<CollectionEntry, ClientError> {
        let req = ClientMessage::VectorCreate(VectorCreate {
            collection: collection.into(),
            dimension,
            metric: metric.map(str::to_string),
        });
        match self.request(req).await? {
            ServerMessage::VectorCollection(c) => Ok(c),
            other => Err(unexpected(other)),
        }
    }

    /// Stores a record (its id chosen by the broker when `None`); returns the id once a
    /// search finds it.
    pub async fn vector_store(&self, req: VectorStore) -> Result<String, ClientError> {
        match self
            .request(ClientMessage::VectorStore(Box::new(req)))
            .await?
        {
            ServerMessage::VectorStored { id } => Ok(id),
            other => Err(unexpected(other)),
        }
    }

    /// The records nearest to the query vector, nearest first.
    pub async fn vector_search(&self, req: VectorSearch) -> Result<Vec<VectorResult>, ClientError> {
        match self
            .request(ClientMessage::VectorSearch(Box::new(req)))
            .await?
        {
            ServerMessage::VectorResults { results } => Ok(results),
            other => Err(unexpected(other)),
        }
    }

    pub async fn vector_delete(&self, collection: &str, id: &str) -> Result<(), ClientError> {
        self.request_ack(ClientMessage::VectorDelete {
            collection: collection.into(),
            id: id.into(),
        })
        .await
    }

    /// Deletes a collection with all its records.
    pub async fn vector_delete_collection(&self, collection: &str) -> Result<(), ClientError> {
        self.request_ack(ClientMessage::VectorDeleteCollection {
            collection: collection.into(),
        })
        .await
    }

    /// The mesh's collections, by name.
    pub async fn list_collections(&self) -> Result<Vec<CollectionEntry>, ClientError> {
        match self.request(ClientMessage::ListCollections {}).await? {
            ServerMessage::CollectionList { details, .. } => Ok(details),
            other => Err(unexpected(other)),
        }
    }
}
